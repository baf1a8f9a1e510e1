"""How the suite splits across pytest-xdist workers (`scripts/test.sh` runs two).

Most of the suite's time is spent starting real processes (a daemon, `sine edit`, GIMP, Krita) and
waiting on them, so on two cores one pytest process leaves a core idle; two workers use both. Each
test file runs whole on one worker, so its module-scoped daemon starts once. The real-host tests
run as one group, first: they share one GIMP home per root (its first start takes minutes), and
two roots' Xvfb on different workers could pick the same display number.

The groups are made by our own scheduler, not by `xdist_group` marks: with pytest 9.2, xdist 3.8's
`--dist loadgroup` silently ignores the marks (pytest-xdist issue 1386).
"""

from __future__ import annotations

from typing import Any

import pytest

HOSTS_GROUP = "real-hosts"


def group_of(nodeid: str) -> str:
    """The unit one worker runs whole: every real-host test together, else the test's file."""
    return HOSTS_GROUP if nodeid.startswith("tests/hosts/") else nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, when it is installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return ByGroup(config, log)


@pytest.hookimpl(trylast=True)  # after pytest orders the items by their fixtures' parameters
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: group_of(item.nodeid) != HOSTS_GROUP)  # stable; the longest group first
