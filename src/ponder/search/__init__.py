"""Search: turn more compute into better solutions. One function per searcher or selector."""

from ponder.search.beam import BeamConfig, beam_search
from ponder.search.best_of_n import best_of_n, select_best
from ponder.search.dvts import DVTSConfig, dvts
from ponder.search.mcts import MCTSConfig, Node, Tree, mcts
from ponder.search.scaling import (
    SearchConfig,
    SearchSpec,
    assign_bins,
    compute_optimal,
    estimate_difficulty,
    plot_scaling,
    sweep,
)
from ponder.search.voting import majority_vote, weighted_vote

__all__ = [
    "BeamConfig",
    "DVTSConfig",
    "MCTSConfig",
    "Node",
    "SearchConfig",
    "SearchSpec",
    "Tree",
    "assign_bins",
    "beam_search",
    "best_of_n",
    "compute_optimal",
    "dvts",
    "estimate_difficulty",
    "majority_vote",
    "mcts",
    "plot_scaling",
    "select_best",
    "sweep",
    "weighted_vote",
]
