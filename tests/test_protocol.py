"""js/protocol.js states, as JSDoc types, the messages between the page and the kernel;
`npm run typecheck` holds the JS to it. This holds the kernel to it: every message type the
page may send is one the Transcriber handles (none is counted as an unknown type), so a type
renamed on one side only fails here."""

from __future__ import annotations

import re
from pathlib import Path

from funasr_widget import Transcriber

PROTOCOL = Path(__file__).resolve().parents[1] / "js" / "protocol.js"


def message_types(typedef: str) -> set[str]:
    """The `type` literals of a typedef in protocol.js, with those of the typedefs it names."""
    blocks = {}
    for block in re.findall(r"/\*\*(.*?)\*/", PROTOCOL.read_text(encoding="utf-8"), re.S):
        for name in re.findall(r"\}\}?\)?\s+([A-Z]\w*)", block):
            blocks[name] = block
    block = blocks[typedef]
    found = set(re.findall(r'type: "([a-z-]+)"', block))
    for name in set(re.findall(r"\b([A-Z]\w*)\b", block)) & set(blocks) - {typedef}:
        found |= set(re.findall(r'type: "([a-z-]+)"', blocks[name]))
    return found


def test_every_message_type_the_page_sends_is_one_the_kernel_handles():
    sent = message_types("PageMessage")
    assert {"chunk", "start", "hello", "env"} <= sent, sent  # the parse found the union
    widget = Transcriber(model=None, vad="energy")
    try:
        for kind in sorted(sent):
            widget._handle_custom_msg({"type": kind}, [])  # a bare one: refused perhaps, but known
        assert "unknown-type" not in widget.stats["rejected_by"]
        widget._handle_custom_msg({"type": "no-such-type"}, [])  # what the check above would see
        assert widget.stats["rejected_by"]["unknown-type"] == 1
    finally:
        widget.close()
