"""The campaign's control group: who publish holds back, and where it records who got what.

Publish splits the model's selection (``Model.crm_select``) into a treated arm, sent to the CRM, and
a held-out control arm, never sent. The split hashes the run and the contact (BLAKE2b), so it is a
fixed pseudo-random draw: a retry of the run holds out exactly the same contacts, while another run
draws afresh. Both arms are recorded before anything is sent::

    <lake>/campaign/<pipeline>/customer=<c>/run=<run key>/_MANIFEST.json
        columns: <model key>, score | prediction, model_version, arm (treated | control), rank

which is what the monitor step reads to measure the uplift (treated vs control outcome) once the
label window has passed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from mlplatform_contract import layout

CAMPAIGN_ZONE = layout.CAMPAIGN
TREATED, CONTROL = "treated", "control"
_SCALE = float(1 << 64)


def hashed_uniforms(keys: Iterable[str], salt: bytes) -> np.ndarray:
    """One fixed pseudo-random number in [0, 1) per contact: BLAKE2b of salt + contact, so a retry
    of the run draws the same numbers and another run (another salt) draws afresh."""
    return (
        np.fromiter(
            (
                int.from_bytes(hashlib.blake2b(salt + k.encode(), digest_size=8).digest(), "big")
                for k in keys
            ),
            dtype=np.float64,
        )
        / _SCALE
    )


def held_out(keys: list[str], identity: str, fraction: float) -> list[bool]:
    """Whether each contact is in the control arm: hash(run identity, contact) < fraction."""
    return (hashed_uniforms(keys, identity.encode() + b"\n") < fraction).tolist()


def split(selection: Any, key: str, identity: str, fraction: float) -> tuple[Any, Any]:
    """(treated rows in selection order, the assignment table of both arms with their ranks)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    control = pa.array(held_out(selection[key].to_pylist(), identity, fraction), pa.bool_())
    arms = pa.array([CONTROL if c else TREATED for c in control.to_pylist()], pa.string())
    assignment = selection.append_column("arm", arms).append_column(
        "rank", pa.array(range(selection.num_rows), pa.int64())
    )
    return selection.filter(pc.invert(control)), assignment
