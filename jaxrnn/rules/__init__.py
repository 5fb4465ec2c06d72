"""Scan rules: how :func:`jaxrnn.scan` runs a cell faster than ``lax.scan`` of its step.

A rule is a :class:`ScanRule`, registered with its cell (``jaxrnn.Cell(...,
scan_rule=...)``). Two generic rules ship here, each with the pieces a cell
(a built-in one or a user's) needs to use it:

* :class:`FusedGradient`, for any sequential cell: the cell's step with its
  residuals, the derivative of one step, and the weight gradients of all steps
  at once, as single matmuls (:func:`contract`, :func:`input_grads`,
  :func:`sum_rows`, the activations' derivatives :func:`sigmoid_grad` and
  :func:`tanh_grad`, and :func:`masked_input` / :func:`masked_inputs` for a
  ``recurrent_mask``).
* :class:`LinearRecurrence`, for a cell whose step is ``H_t = A_t ⊙ H_{t-1} +
  B_t`` with coefficients read from the input alone: a parallel scan over time
  (:func:`linear_scan`), which also shards the time axis over devices
  (:func:`sharded_linear_scan`); the cell's step is :func:`linear_step` of
  the same coefficients, and :func:`input_projection` computes its gates.
* :class:`MatrixMemory`, for a matrix memory with exponential gates (xLSTM's
  mLSTM): the quadratic and the chunkwise parallel forms (:func:`matrix_scan`),
  the step being :func:`matrix_step` of the same inputs; it shards the time
  axis too (:func:`sharded_matrix_scan`).
"""

from jaxrnn.rules.base import ScanRule as ScanRule
from jaxrnn.rules.fused import FusedGradient as FusedGradient
from jaxrnn.rules.fused import contract as contract
from jaxrnn.rules.fused import input_grads as input_grads
from jaxrnn.rules.fused import masked_input as masked_input
from jaxrnn.rules.fused import masked_inputs as masked_inputs
from jaxrnn.rules.fused import sigmoid_grad as sigmoid_grad
from jaxrnn.rules.fused import sum_rows as sum_rows
from jaxrnn.rules.fused import tanh_grad as tanh_grad
from jaxrnn.rules.linear import BLOCK as BLOCK
from jaxrnn.rules.linear import LinearRecurrence as LinearRecurrence
from jaxrnn.rules.linear import input_projection as input_projection
from jaxrnn.rules.linear import linear_scan as linear_scan
from jaxrnn.rules.linear import linear_step as linear_step
from jaxrnn.rules.linear import sharded_linear_scan as sharded_linear_scan
from jaxrnn.rules.matrix import MatrixInputs as MatrixInputs
from jaxrnn.rules.matrix import MatrixMemory as MatrixMemory
from jaxrnn.rules.matrix import MatrixState as MatrixState
from jaxrnn.rules.matrix import matrix_scan as matrix_scan
from jaxrnn.rules.matrix import matrix_step as matrix_step
from jaxrnn.rules.matrix import sharded_matrix_scan as sharded_matrix_scan
from jaxrnn.rules.readout import ReadoutState as ReadoutState
from jaxrnn.rules.segments import SegmentState as SegmentState
from jaxrnn.rules.segments import segment_flags as segment_flags
