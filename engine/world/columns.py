"""The columns a user's table must have, and what to say when they are missing."""

from __future__ import annotations

import pandas as pd

from engine.core.errors import E_WORLD_INPUT, EngineError

OTHER_SEPARATORS = ((";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars"))


def require_columns(frame: pd.DataFrame, needed: set[str], what: str, source: str) -> None:
    """E3A_WLD_001 naming the columns ``frame`` lacks; where its header reads as one name holding another
    separator (a spreadsheet's CSV export with semicolons, a TSV named .csv), that is said too."""
    missing = needed - {str(c) for c in frame.columns}
    if not missing:
        return
    names = [str(c) for c in frame.columns]
    hint = next((f"; its header is read as {names[0]!r}: the file looks separated by {label}, and a CSV is read "
                 f"with commas" for sep, label in OTHER_SEPARATORS if any(sep in n for n in names)), "")
    written = {n.strip().lower().replace(" ", "_"): n for n in names}
    near = [(written[m], m) for m in sorted(missing) if m in written]
    if near and not hint:   # Merchant_ID, "Site Count": names are read as written
        hint = f"; its header has {near[0][0]!r}: name it {near[0][1]} (column names are read as written)"
    raise EngineError(E_WORLD_INPUT, f"{source}: {what} lacks column(s) {sorted(missing)}{hint}")
