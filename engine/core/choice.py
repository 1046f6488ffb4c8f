"""The strategy a ``[strategy]`` choice names, built: pure, a fresh instance per call.

``sma_cross`` is ``SmaCross``, ``donchian_breakout`` is ``DonchianBreakout`` (their
parameters are ``engine.config.schema``'s sections); a user kind is its class --
resolved and imported by ``engine.config.strategies``, which hands it over as
``user_class`` -- instantiated with its ``Params`` (or with nothing) and hosted by
``engine.core.hosted.Hosted``. The configuration was admitted already (a user
constructor that refuses its parameters is exit 12 there), so building raises
only what the trader's constructor raises when run a second time.
"""

from __future__ import annotations

from engine.config.schema import DonchianParams, StrategyChoice, StrategySection
from engine.core.donchian import DonchianBreakout
from engine.core.hosted import Hosted
from engine.core.strategy import SmaCross

BuiltStrategy = SmaCross | DonchianBreakout | Hosted
"""What ``build_strategy`` returns: each implements the ``engine.ports.Strategy`` port."""


def build_strategy(choice: StrategyChoice, user_class: type | None = None) -> BuiltStrategy:
    """A fresh instance of ``choice``'s strategy (``user_class``: a user kind's class)."""
    params = choice.params
    if user_class is not None:
        takes_params = getattr(user_class, "Params", None) is not None
        return Hosted(user_class(params) if takes_params else user_class(), choice.kind)
    if isinstance(params, StrategySection):
        return SmaCross(fast=params.fast, slow=params.slow, bar_seconds=params.bar_seconds)
    if isinstance(params, DonchianParams):
        return DonchianBreakout(lookback=params.lookback, bar_seconds=params.bar_seconds)
    raise TypeError(f"{choice.kind}: a user strategy needs its class (user_class)")
