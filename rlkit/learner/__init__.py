"""The learner: DeepSpeed ZeRO ranks as Ray actors.

`LearnerGroup` (rlkit.learner.group) starts the ranks; `LearnerWorker` (rlkit.learner.worker)
is one rank. Those modules import Ray and DeepSpeed; this package itself stays light so config
loading can import the options.
"""

from rlkit.learner.collate import collate
from rlkit.learner.logprobs import token_logprobs_and_entropy
from rlkit.learner.options import LearnerOptions

__all__ = ["LearnerOptions", "collate", "token_logprobs_and_entropy"]
