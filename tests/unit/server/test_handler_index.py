"""The handler index (server/handler_index.py) against the `@handles` decorators, and what a
broker imports before its first request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from strom.server.handler_index import HANDLER_INDEX
from strom.server.registry import HANDLERS, import_all_handlers

HANDLER_DIR = Path(__file__).resolve().parents[3] / "src" / "strom" / "server" / "handlers"


def test_the_index_names_every_handler_with_its_versions() -> None:
    import_all_handlers()
    registered = {
        key: (h.fn.__module__.rsplit(".", 1)[1], h.min_version, h.max_version)
        for key, h in HANDLERS.registered().items()
    }
    assert registered == HANDLER_INDEX, (
        "server/handler_index.py must list every @handles(api_key, min, max) of "
        "server/handlers/ with its module"
    )


def test_every_module_with_a_handler_is_in_the_index() -> None:
    with_handlers = {
        path.stem for path in HANDLER_DIR.glob("*.py") if "@handles(" in path.read_text()
    }
    assert with_handlers == {module for module, _, _ in HANDLER_INDEX.values()}


def test_lookup_imports_the_module_on_first_use() -> None:
    code = (
        "import sys\n"
        "from strom.server.registry import handler_for\n"
        "assert 'strom.server.handlers.produce' not in sys.modules\n"
        "h = handler_for(0)\n"
        "assert h is not None and h.fn.__name__ == 'handle_produce'\n"
        "assert (h.min_version, h.max_version) == (0, 11)\n"
        "assert handler_for(38) is None\n"  # CreateDelegationToken: no handler
        "assert 'strom.server.handlers.fetch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_single_broker_imports_no_zookeeper_client_and_no_handler_at_start() -> None:
    """What `strom serve` imports before its listeners open (strom.server.app): no kazoo,
    nothing of cluster/zk, no handler module, no generated message module of a handler, no
    aiohttp or prometheus_client (HTTP listener off), no cryptography (no TLS, no password)."""
    code = (
        "import sys\n"
        "import strom.server.app\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('kazoo', 'aiohttp', 'prometheus_client', 'cryptography') "
        "or m.startswith(('strom.cluster.zk', 'strom.server.handlers.')))\n"
        "print('\\n'.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.split() == []
