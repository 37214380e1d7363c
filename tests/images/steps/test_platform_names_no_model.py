"""Platform code names no model: no raw table, column, feature, label, key or CRM field of any
installed model appears as a word in plugins/, the step package or embedded/. A model's names live
in its own package (models/<name>/), so a new model never needs a platform change."""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from pathlib import Path

from model_steps.model_loader import ENTRY_POINT_GROUP

REPO = Path(__file__).resolve().parents[3]
PLATFORM = [REPO / "plugins", REPO / "images" / "steps" / "model_steps", REPO / "embedded"]
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# words a model's CRM record or docs use that its declarations do not hold
RECORD_WORDS = {"offer_code", "propensity", "vip", "diner", "diners"}
# plain words the platform itself needs: "label" (a Kubernetes label, the label window) and
# "region" (an AWS region) are also column names of the example models; "segment" (the campaign
# experiments' unit of allocation, model_steps.bandit) and "propensity" (the probability a logged
# contact got its variant, model_steps.ope) are the bandit and off-policy literature's own terms
GENERIC = {"label", "region", "segment", "propensity"}


def model_words() -> dict[str, str]:
    """word -> the model that owns it."""
    words: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        model = ep.load()
        names = {model.name, model.key, model.label_column, *model.feature_schema}
        for table in model.raw_tables:
            names |= {table.name, *table.columns}
        words.update({n: model.name for n in (names | RECORD_WORDS) - GENERIC})
    return words


def test_platform_code_names_no_model() -> None:
    owned = model_words()
    assert {"customer_propensity", "next_spend", "diner_id", "spend_next"} <= set(owned)
    found = []
    for root in PLATFORM:
        for path in sorted(root.rglob("*.py")):
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                for word in set(WORD.findall(line)) & set(owned):
                    found.append(f"{path.relative_to(REPO)}:{lineno}: {word!r} ({owned[word]})")
    assert not found, "platform code names a model's tables/features/fields:\n" + "\n".join(found)
