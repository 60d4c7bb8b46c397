"""Importing a lab's own exports into a bptwin dataset (``bptwin import``, docs/dataset.md).

Modules, in the order the data flows: :mod:`.text_table` reads a delimited export (encoding,
delimiter, header and unit rows, stated or detected), :mod:`.cells` reads its numbers strictly,
:mod:`.clock` its times, :mod:`.column_map` is the TOML import map, :mod:`.sensors` turns one
batch's files into channels merged on time, :mod:`.samples` reads the offline samples and
:mod:`.importer` assembles and writes the dataset.
"""

from __future__ import annotations

from bptwin.twin.lab_import.cells import BadCell, CellError, NumberFormat, parse_numbers
from bptwin.twin.lab_import.column_map import ImportMap, MapError, load_map, parse_map
from bptwin.twin.lab_import.importer import ImportResult, import_batch, import_lab

__all__ = [
    "BadCell",
    "CellError",
    "ImportMap",
    "ImportResult",
    "MapError",
    "NumberFormat",
    "import_batch",
    "import_lab",
    "load_map",
    "parse_map",
    "parse_numbers",
]
