"""fastbp.kernels: the compiled arithmetic, pure functions on arrays.

Every kernel trusts its inputs (C-contiguous, one floating dtype, matching
shapes, outputs preallocated); the classes in `fastbp` check all of that once
at the public boundary. Each file holds one concept with every `*_forward`
beside its `*_backward`.
"""
from .activations import (IDENTITY, NAMES as ACTIVATION_NAMES, RELU, SIGMOID, TANH,
                          activation_backward, activation_forward)
from .dense import DIRECT_LOOP_MAX_MACS, dense_backward, dense_forward
from .losses import (BCE, BCE_WITH_LOGITS, CROSS_ENTROPY_LABELS, CROSS_ENTROPY_SOFT, HALF_SUM, MEAN, MSE,
                     REDUCTIONS, SKLEARN, SUM, bce_backward, bce_forward,
                     bce_with_logits_backward, bce_with_logits_forward, mse_backward,
                     mse_forward, soft_cross_entropy_backward, soft_cross_entropy_forward,
                     softmax_cross_entropy_backward, softmax_cross_entropy_forward,
                     weighted_loss_forward_backward)
from .optim import (ADAM, BETA1, BETA2, DECOUPLED_WEIGHT_DECAY, EPS, EPS_HAT, HYPER_SIZE, LR, MAX_GRAD_NORM, MOMENTUM,
                    NESTEROV, SGD, WEIGHT_DECAY, adam_update, adam_update_is_finite, clip_coefficient,
                    sgd_update, sgd_update_is_finite, sum_of_squares, update, update_is_finite)

__all__ = [
    "IDENTITY", "SIGMOID", "RELU", "TANH", "ACTIVATION_NAMES",
    "activation_forward", "activation_backward",
    "DIRECT_LOOP_MAX_MACS", "dense_forward", "dense_backward",
    "MEAN", "SUM", "HALF_SUM", "SKLEARN", "REDUCTIONS",
    "MSE", "BCE", "BCE_WITH_LOGITS", "CROSS_ENTROPY_LABELS", "CROSS_ENTROPY_SOFT",
    "mse_forward", "mse_backward", "bce_forward", "bce_backward",
    "bce_with_logits_forward", "bce_with_logits_backward",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "soft_cross_entropy_forward", "soft_cross_entropy_backward", "weighted_loss_forward_backward",
    "sgd_update", "sgd_update_is_finite", "adam_update", "adam_update_is_finite",
    "SGD", "ADAM", "HYPER_SIZE", "LR", "MOMENTUM", "NESTEROV", "WEIGHT_DECAY", "DECOUPLED_WEIGHT_DECAY",
    "BETA1", "BETA2", "EPS", "EPS_HAT", "MAX_GRAD_NORM", "update", "update_is_finite", "sum_of_squares",
    "clip_coefficient",
]
