"""One row through a LightGBM booster without the Python wrapper's per-call set-up.

``Booster.predict`` builds a new inner predictor for every call (parameter copies, a
parameter string, array checks): for the one 30 s window of serving that set-up costs several
times the trees themselves. LightGBM's C API has a path for exactly this case: a *fast
config* made once (``LGBM_BoosterPredictForMatSingleRowFastInit``), then one call per row
(``LGBM_BoosterPredictForMatSingleRowFast``) into a buffer of our own. Used for the nowcast and
its SHAP contributions (``predict_type`` contrib); the result is the same numbers
``Booster.predict`` gives (tests/test_predictor.py compares them).

Not thread-safe by itself (one fast config, one output buffer): each call holds a lock.
When the library lacks the entry points the wrapper's ``predict`` is used instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import lightgbm

log = logging.getLogger(__name__)

PREDICT_NORMAL = 0
PREDICT_CONTRIB = 3
_DTYPE_FLOAT64 = 1


class SingleRowPredictor:
    """``predictor(row) -> output`` for one float64 row of ``columns`` values: the prediction
    (1 value) or, with ``contributions=True``, the SHAP values (columns + 1, the base last).

    The returned array is this predictor's own buffer, overwritten by the next call: copy what
    must outlive it.
    """

    def __init__(
        self,
        booster: lightgbm.Booster,
        columns: int,
        *,
        contributions: bool = False,
        row: np.ndarray | None = None,
    ) -> None:
        """``row``: an input buffer of the caller's that ``predictor()`` (no argument) reads,
        its address taken once (no per-call ctypes conversion)."""
        self.booster = booster
        self.columns = columns
        self.contributions = contributions
        self.row = row
        if row is not None:
            self._check(row)
        self._row_pointer = ctypes.c_void_p(row.ctypes.data) if row is not None else None
        self._lock = threading.Lock()
        self._out = np.zeros(columns + 1 if contributions else 1, dtype=np.float64)
        self._out_pointer = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._out_len = ctypes.c_int64(0)
        self._config: ctypes.c_void_p | None = None
        self._lib: Any = None
        try:
            self._init_fast()
        except Exception as exc:  # an older or stripped library: the wrapper's path
            log.info("LightGBM single-row fast path unavailable (%s): using Booster.predict", exc)
            self._config = None

    @property
    def fast(self) -> bool:
        """Whether the C API's single-row path is in use."""
        return self._config is not None

    def _init_fast(self) -> None:
        from lightgbm.basic import _LIB, _safe_call

        # As Booster.predict: the best iteration when training recorded one, else all.
        best = int(getattr(self.booster, "best_iteration", -1) or -1)
        config = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                self.booster._handle,
                ctypes.c_int(PREDICT_CONTRIB if self.contributions else PREDICT_NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(best if best > 0 else -1),
                ctypes.c_int(_DTYPE_FLOAT64),
                ctypes.c_int32(self.columns),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(config),
            )
        )
        self._lib, self._config = _LIB, config

    def _check(self, row: np.ndarray) -> None:
        if row.dtype != np.float64 or row.size != self.columns or not row.flags.c_contiguous:
            raise ValueError(f"expected {self.columns} contiguous float64 values, got {row.shape}")

    def __call__(self, row: np.ndarray | None = None) -> np.ndarray:
        """The output for ``row`` (shape (columns,) or (1, columns), float64, C-contiguous),
        or for the bound input buffer when called without one."""
        if row is None:
            if self.row is None or self._row_pointer is None:
                raise ValueError("no row given and no input buffer bound")
            row, pointer = self.row, self._row_pointer
        else:
            self._check(row)
            pointer = row.ctypes.data_as(ctypes.c_void_p)
        if self._config is None:
            result = self.booster.predict(
                row.reshape(1, -1), pred_contrib=self.contributions, num_threads=1
            )
            self._out[:] = np.asarray(result, dtype=np.float64).reshape(-1)
            return self._out
        from lightgbm.basic import _safe_call

        with self._lock:
            _safe_call(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self._config,
                    pointer,
                    ctypes.byref(self._out_len),
                    self._out_pointer,
                )
            )
            if self._out_len.value != len(self._out):
                raise ValueError(
                    f"LightGBM wrote {self._out_len.value} values, expected {len(self._out)}"
                )
        return self._out

    def close(self) -> None:
        """Free the fast config (also done when the predictor is collected)."""
        config, self._config = self._config, None
        if config is not None and self._lib is not None:
            self._lib.LGBM_FastConfigFree(config)

    def __del__(self) -> None:
        # At interpreter shutdown the library may be gone already.
        with contextlib.suppress(Exception):
            self.close()
