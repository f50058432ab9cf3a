"""Search: turn more compute into better solutions. One function per searcher or selector."""

from ponder.search.best_of_n import best_of_n, select_best
from ponder.search.voting import majority_vote, weighted_vote

__all__ = ["best_of_n", "majority_vote", "select_best", "weighted_vote"]
