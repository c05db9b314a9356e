"""The CLI's one progress adapter: charlab's `progress(done, total, message)` callbacks drawn as a tqdm bar."""
from __future__ import annotations

import sys
import time


class TqdmProgress:
    """progress(done, total, msg) -> one tqdm bar on stderr, re-created when the total changes
    (data loading, then training), or with `per_message` when the message changes (each
    loading phase its own bar, the message as its label). Off when `enabled` is False: a
    background run's train.log gets one line per epoch instead of carriage-return noise.
    Redraws at most 5 times a second; `write(line)` prints above the bar."""

    def __init__(self, enabled: bool = True, stream=None, *, unit: str = "batch", per_message: bool = False):
        self.enabled, self.stream, self.unit, self.per_message = enabled, stream or sys.stdout, unit, per_message
        self.bar, self.message, self.last = None, None, 0.0

    def __call__(self, done: int, total: int, msg: str) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.bar is None or (msg != self.message if self.per_message else self.bar.total != total):
            self.close()
            self.bar = tqdm(total=total, desc=msg if self.per_message else None, dynamic_ncols=True, leave=False,
                            unit=self.unit, file=sys.stderr)
            self.message = msg
        self.bar.total, self.bar.n = total, done
        now = time.monotonic()
        if now - self.last > 0.2 or done >= total:
            if not self.per_message:
                self.bar.set_description_str(msg, refresh=False)
            self.bar.refresh()
            self.last = now

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "TqdmProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
