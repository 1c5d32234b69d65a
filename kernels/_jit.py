"""The decorators every CPU kernel uses, `const_like` for typed constants, and
`view1d` / `view2d` / `ravel` for cheap views of flat buffers.

- ``cache=True``: compiled code is written next to the source (or to
  ``NUMBA_CACHE_DIR``, or a private fallback when the install is read-only;
  see `_enable_cache`) so a second process loads it in milliseconds. It is
  stamped with a hash of every kernel file, not only its own (see
  `_kernel_locator`).
- ``error_model="numpy"``: numba's default ("python") puts a zero-division
  check in every ``/``, which stops loops from vectorising (8x slower here).
- ``nogil=True``: two threads training two models run their kernels at once.
- No ``fastmath``: results must follow IEEE evaluation order, which the tests
  compare against torch, and NaN must propagate. The one exception is
  `jit_sum`, for plain sums, which may be split into vector lanes.
- No ``parallel=True``: on 2 cores a prange epilogue fought the
  threaded BLAS GEMM next to it and lost (field notes); the kernels stay
  serial and let BLAS own the threads.
"""
import hashlib
import os
import tempfile

import numba
from llvmlite import ir
from numba import njit, types
from numba.core import caching, cgutils
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array, populate_array

def _cache_folder_usable(path):
    """True when `path` exists or can be made, is ours alone, and takes files."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.stat(path)
        # a folder others can write could hold planted cache files (pickles)
        if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
            return False
        with tempfile.TemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _enable_cache():
    """Whether kernels can be cached, pointing numba at a writable folder if needed.

    numba caches next to the source (kernels/__pycache__) and, when that is
    read-only (a system-wide install), fails at import with "no locator
    available" unless NUMBA_CACHE_DIR names a writable folder (numba#4908).
    Then fastbp uses ~/.cache/fastbp-numba, else a private folder in the
    temporary directory, else compiles without caching.
    """
    if numba.config.CACHE_DIR:
        return True
    if os.access(os.path.dirname(os.path.abspath(__file__)), os.W_OK) and _cache_folder_usable(
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")):
        return True
    user = getattr(os, "getuid", lambda: "user")()
    for folder in (os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                "fastbp-numba"),
                   os.path.join(tempfile.gettempdir(), f"fastbp-numba-{user}")):
        if _cache_folder_usable(folder):
            numba.config.CACHE_DIR = folder
            return True
    return False


def kernel_sources_hash(folder=os.path.dirname(os.path.abspath(__file__))):
    """SHA-256 over every .py file under `folder` (names and contents)."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.digest()


_KERNELS_FOLDER = os.path.dirname(os.path.abspath(__file__)) + os.sep
_KERNELS_HASH = kernel_sources_hash()


def _kernel_locator(base):
    """numba's cache locator `base`, restricted to files of this package and
    stamped with the hash of all of them. numba stamps a cached function with
    its own file only, but compiled code inlines kernels from other files: an
    edited activations.py left dense.py's cached code running the old
    activation (numba#1833). With this stamp any kernel edit recompiles all."""
    class KernelLocator(base):
        def get_source_stamp(self):
            return _KERNELS_HASH

        @classmethod
        def from_function(cls, py_func, py_file):
            if not os.path.abspath(py_file).startswith(_KERNELS_FOLDER):
                return None
            return super().from_function(py_func, py_file)
    KernelLocator.__name__ = KernelLocator.__qualname__ = "Kernel" + base.__name__
    return KernelLocator


def _stamp_cache_with_all_kernels():
    # An internal numba list, stable for years; were it to change, caching
    # would keep numba's own per-file stamps (the documented numba#1833 limit).
    locators = getattr(getattr(caching, "CacheImpl", None), "_locator_classes", None)
    if not isinstance(locators, list) or any(c.__name__.startswith("Kernel") for c in locators):
        return
    bases = [getattr(caching, name) for name in ("UserProvidedCacheLocator", "InTreeCacheLocator",
                                                 "UserWideCacheLocator") if hasattr(caching, name)]
    locators[:0] = [_kernel_locator(base) for base in bases]


CACHE = _enable_cache()
if CACHE:
    _stamp_cache_with_all_kernels()
jit = njit(cache=CACHE, error_model="numpy", nogil=True)
# For sums only: "reassoc" lets LLVM split one running sum into vector lanes
# (a sequential float sum waits ~4 cycles per add). The split is fixed when the
# code is compiled, so a result never depends on threads or on the run; it does
# differ in the last bits from a strict left-to-right sum. NaN and inf
# propagate as usual (no "nnan" / "ninf").
jit_sum = njit(cache=CACHE, error_model="numpy", nogil=True, fastmath={"reassoc"})
inline = njit(inline="always", error_model="numpy")


def const_like(x, value):
    """`value` in the floating type of the scalar `x`.

    A bare literal would not do: numba types ``float32 - 1`` as float64, which
    silently doubles the cost of every float32 kernel that mentions a constant.
    """
    return type(x)(value)


@overload(const_like, inline="always")
def _const_like(x, value):
    if isinstance(x, types.Float):
        float_type = x

        def impl(x, value):
            return float_type(value)

        return impl


def _intp(context, builder, value):
    intp = context.get_value_type(types.intp)
    return builder.sext(value, intp) if value.type.width < intp.width else value


# The views below borrow their source's memory: they carry no owner, so
# making and dropping one costs no reference count (an atomic add on the
# owner each way, which a step of tiny layers paid for dozens of views). The
# kernels view only buffers their caller passed in and holds throughout
# (params, grads, the workspace, x, out), never an array they allocate, and
# hand no view back to Python.
def _view_codegen(src_type, ret_type, shape_of):
    """Code for a C-ordered view of a C-contiguous array: same data, new shape
    (shape_of(builder, args) -> list of intp values), no owner."""
    def codegen(context, builder, signature, args):
        src = make_array(src_type)(context, builder, args[0])
        view = make_array(ret_type)(context, builder)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(
            context.get_data_type(src_type.dtype)))
        dims = [_intp(context, builder, d) for d in shape_of(builder, src, args)]
        strides, stride = [], itemsize
        for d in reversed(dims):
            strides.insert(0, stride)
            stride = builder.mul(stride, d)
        offset = _intp(context, builder, args[1]) if len(args) > 1 else context.get_constant(types.intp, 0)
        populate_array(view, data=builder.gep(src.data, [offset]), shape=cgutils.pack_array(builder, dims),
                       strides=cgutils.pack_array(builder, strides), itemsize=itemsize,
                       meminfo=cgutils.get_null_value(src.meminfo.type),
                       parent=cgutils.get_null_value(src.parent.type))
        return view._getvalue()
    return codegen


@intrinsic
def view2d(typingctx, flat, offset, rows, cols):
    """flat[offset:offset + rows * cols] seen as a C-ordered (rows, cols) array.

    What ``flat[a:b].reshape((rows, cols))`` gives, without its checks: numba's
    reshape checks cost a visible share of a step of tiny layers, which pay
    them some twenty times a step. The caller guarantees `flat` is 1-D C-contiguous
    and long enough, and that it outlives the view (see `_view_codegen`).
    """
    if not (isinstance(flat, types.Array) and flat.ndim == 1 and flat.layout == "C"):
        return None
    ret = types.Array(flat.dtype, 2, "C")
    return ret(flat, offset, rows, cols), _view_codegen(flat, ret, lambda b, src, args: args[2:4])


@intrinsic
def view1d(typingctx, flat, offset, n):
    """flat[offset:offset + n] without a slice's bounds arithmetic or owner;
    `flat` must outlive it (see `_view_codegen`)."""
    if not (isinstance(flat, types.Array) and flat.ndim == 1 and flat.layout == "C"):
        return None
    ret = types.Array(flat.dtype, 1, "C")
    return ret(flat, offset, n), _view_codegen(flat, ret, lambda b, src, args: args[2:3])


@intrinsic
def ravel(typingctx, array):
    """A C-contiguous 2-D array as 1-D, sharing memory (reshape(-1) without the
    checks); `array` must outlive it (see `_view_codegen`)."""
    if not (isinstance(array, types.Array) and array.ndim == 2 and array.layout == "C"):
        return None
    ret = types.Array(array.dtype, 1, "C")

    def size(builder, src, args):
        rows, cols = cgutils.unpack_tuple(builder, src.shape, 2)
        return [builder.mul(rows, cols)]
    return ret(array), _view_codegen(array, ret, size)


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma: one instruction on CPUs with FMA, as
    every AVX2 x86 has; elsewhere a call to libm's fma, same result, slower)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None
    return a(a, b, c), lambda context, builder, sig, args: builder.fma(*args)


_BITS = {types.float32: (types.int32, 32), types.float64: (types.int64, 64)}


@intrinsic
def float_bits(typingctx, x):
    """The IEEE bits of a float32 or float64 as an int32 or int64 (a bitcast, vectorisable)."""
    if x not in _BITS:
        return None
    int_type, width = _BITS[x]
    return int_type(x), lambda context, builder, sig, args: builder.bitcast(args[0], ir.IntType(width))


@intrinsic
def float_from_bits(typingctx, bits, like):
    """The float of `like`'s type (float32 or float64) whose IEEE bits are the
    low 32 or 64 bits of the integer `bits` (numba widens int32 arithmetic
    to int64; the truncation undoes it)."""
    if not isinstance(bits, types.Integer) or like not in _BITS:
        return None
    width = _BITS[like][1]

    def codegen(context, builder, sig, args):
        value = args[0]
        if value.type.width > width:
            value = builder.trunc(value, ir.IntType(width))
        elif value.type.width < width:
            value = builder.sext(value, ir.IntType(width))
        return builder.bitcast(value, ir.FloatType() if width == 32 else ir.DoubleType())
    return like(bits, like), codegen
