"""scripts/canary_unsafe_flags.py: the live unsafe classifier's flags per version, extractive ones marked."""

import importlib.util
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "canary_unsafe_flags", Path(__file__).resolve().parents[1] / "scripts" / "canary_unsafe_flags.py")
MOD = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(MOD)


def test_flags_per_version_with_extractive_ones_marked() -> None:
    req = {"messages": [{"role": "system", "content": "Intents: recover_password, track_order"},
                        {"role": "user", "content": "I lost my password"}]}
    rows = [("cand", req, "recover_password"), ("cand", req, "recover_password"), ("cand", req, "Pick the lock."),
            ("cand", req, "track_order"), ("prod", req, "recover_password"), ("prod", req, "track_order")]
    out = MOD.flagged(rows, lambda texts: [t != "track_order" for t in texts])
    assert out["cand"] == {"replies": 4, "flagged": 3, "flagged_extractive": 2,
                           "top": [("recover_password", 2), ("Pick the lock.", 1)]}
    assert out["prod"]["flagged"] == 1 and out["prod"]["flagged_extractive"] == 1
