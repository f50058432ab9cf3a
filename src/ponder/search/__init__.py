"""Search: turn more compute into better solutions. One function per searcher or selector."""

from ponder.search.beam import BeamConfig, beam_search
from ponder.search.best_of_n import best_of_n, select_best
from ponder.search.dvts import DVTSConfig, dvts
from ponder.search.mcts import MCTSConfig, Node, Tree, mcts
from ponder.search.voting import majority_vote, weighted_vote

__all__ = [
    "BeamConfig",
    "DVTSConfig",
    "MCTSConfig",
    "Node",
    "Tree",
    "beam_search",
    "best_of_n",
    "dvts",
    "majority_vote",
    "mcts",
    "select_best",
    "weighted_vote",
]
