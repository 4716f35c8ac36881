"""Record batch v2 (magic 2): the unit Kafka produces, stores and fetches.

The package holds no code of its own; import from the module that owns what you need:

- :mod:`.batch_header`: the 61-byte fixed header (its layout, :class:`BatchHeader`,
  :func:`parse_batch_header`, :func:`iter_batch_headers`) and :func:`assign_offsets`, which
  stamps a header in place before an append.
- :mod:`.validation`: :func:`validate_batches` (what the produce and replication paths check
  without looking at a record) and :func:`check_timestamps`.
- :mod:`.codec`: the record layout; :class:`Record`, :func:`decode_records`,
  :func:`build_batch`.
- :mod:`.control`: control records (transaction markers).
- :mod:`.errors`: :class:`RecordError` and its subclasses, each with the Kafka error code to
  answer with.

The produce path never looks at records: it validates headers and CRCs and patches the header
in place. Records are decoded only where a feature needs them: compaction, control records,
tools and tests.
"""
