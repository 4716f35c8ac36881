"""Short names for writing the configuration tables: type and update-mode aliases and `define`.

The tables hold hundreds of rows; one-letter type names and a keyword-only `define` keep each row
to a line or two that reads like Kafka's ConfigDef.define call it mirrors.
"""

from __future__ import annotations

from strom.config.definitions import ConfigDef, ConfigType, ConfigValue, UpdateMode, Validator

B, S, I, SH, L, D, LS, C, P = (  # noqa: E741 - short names keep the tables readable
    ConfigType.BOOLEAN,
    ConfigType.STRING,
    ConfigType.INT,
    ConfigType.SHORT,
    ConfigType.LONG,
    ConfigType.DOUBLE,
    ConfigType.LIST,
    ConfigType.CLASS,
    ConfigType.PASSWORD,
)
RO, PB, CW = UpdateMode.READ_ONLY, UpdateMode.PER_BROKER, UpdateMode.CLUSTER_WIDE

DOUBLE_MAX = 1.7976931348623157e308


def define(
    name: str,
    ctype: ConfigType,
    default: ConfigValue,
    doc: str,
    validator: Validator | None = None,
    *,
    mode: UpdateMode = RO,
    unused: bool = False,
    internal: bool = False,
    synonyms: tuple[str, ...] = (),
) -> ConfigDef:
    return ConfigDef(name, ctype, default, doc, validator, mode, unused, synonyms, internal)
