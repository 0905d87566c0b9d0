# Included by _core.pyx: the Map hot path.
#
# MapBase holds what every element operation needs (fd, sizes, dtypes, one
# scratch key and value buffer) and implements the dict protocol in C. The
# Python class fastbpf.maps.Map derives from it and adds everything that is
# not per-element (creation, pinning, batches, iteration, info).

cimport cython

# Scalar kinds a key or value dtype can have; anything else goes through numpy.
cdef enum:
    K_OTHER = 0
    K_U8 = 1
    K_U16 = 2
    K_U32 = 3
    K_U64 = 4
    K_I8 = 5
    K_I16 = 6
    K_I32 = 7
    K_I64 = 8
    K_F32 = 9
    K_F64 = 10
    K_BOOL = 11

# How values are handled beyond plain bytes.
cdef enum:
    V_PLAIN = 0
    V_PERCPU = 1
    V_FD = 2        # map-in-map, prog array: write an fd, read back an id
    V_NONE = 3      # value-less (e.g. no value at all)

# Keys and values up to this many bytes (together) are converted in a buffer
# on the C stack: no allocation, and no buffer shared between threads.
cdef enum:
    _STACK_BYTES = 512
    _STACK_WORDS = 64


class OutOfRangeError(OverflowError, ValueError):
    """A number does not fit the field it is written to.

    An OverflowError (it is one) that is also a ValueError, which is what
    earlier versions raised."""


cdef extern from "Python.h":
    # The C API without Cython's exception checks: callers test the result.
    unsigned long long _as_ull "PyLong_AsUnsignedLongLong"(object)
    long long _as_ll "PyLong_AsLongLong"(object)
    PyObject *PyErr_Occurred()
    void PyErr_Clear()


cdef int _scalar_kind(object dt, uint32_t size):
    if dt is None or dt.itemsize != size or dt.fields is not None or dt.subdtype is not None:
        return K_OTHER
    if not dt.isnative:
        return K_OTHER
    k = dt.kind
    if k == "b":
        return K_BOOL if size == 1 else K_OTHER
    if k == "u":
        return {1: K_U8, 2: K_U16, 4: K_U32, 8: K_U64}.get(size, K_OTHER)
    if k == "i":
        return {1: K_I8, 2: K_I16, 4: K_I32, 8: K_I64}.get(size, K_OTHER)
    if k == "f":
        return {4: K_F32, 8: K_F64}.get(size, K_OTHER)
    return K_OTHER


cdef inline bint _is_intlike(object o):
    return PyLong_Check(o) or isinstance(o, _np.integer)


cdef object _exact_int(object obj, str what, object dt):
    """*obj* as a Python int when it is an exact integer (int, bool, numpy
    integer, 0-d integer array, anything with ``__index__``); None for
    sequences and arrays (the caller's generic path takes those); TypeError
    for floats and strings, so no conversion ever drops a fraction or
    parses text."""
    if PyLong_Check(obj):
        return obj
    if isinstance(obj, (_np.integer, _np.bool_)):
        return PyNumber_Index(obj)
    if isinstance(obj, _np.ndarray):
        if (<object>obj).ndim == 0 and (<object>obj).dtype.kind in "iub":
            return PyNumber_Index((<object>obj).item())
        if (<object>obj).ndim != 0:
            return None
    elif isinstance(obj, (list, tuple, _np.void)):
        return None
    elif not isinstance(obj, (float, str, _np.floating, _np.complexfloating, complex)):
        if hasattr(obj, "__array__"):
            return _exact_int(_np.asarray(obj), what, dt)
        try:
            return PyNumber_Index(obj)
        except TypeError:
            pass
    raise TypeError(f"{what} must be an integer for {dt}, not {type(obj).__name__} {obj!r}")


cdef int _range_error(object obj, str what, object dt) except -1:
    if obj < 0 and dt.kind in "ub":
        raise OutOfRangeError(f"{what} {obj} is negative, but the {what} type is {dt}")
    raise OutOfRangeError(f"{what} {obj} does not fit {dt}")


cdef int _pack_scalar(int kind, object obj, char *buf, str what, object dt) except -1:
    """Write a Python number into *buf* as the C scalar *kind*.

    Returns 1 when handled, 0 when *obj* should go the generic way (raw
    bytes, or *kind* K_OTHER). Integers must be exact and fit; floats go
    only into float fields; anything else is a TypeError naming *what*."""
    cdef unsigned long long u
    cdef long long s
    cdef double d
    if kind == K_OTHER:
        return 0
    if not PyLong_CheckExact(obj):
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return 0
        if not ((kind == K_F32 or kind == K_F64)
                and (PyFloat_Check(obj) or isinstance(obj, _np.floating))):
            obj = _exact_int(obj, what, dt)
            if obj is None:
                return 0
    if kind == K_F32 or kind == K_F64:
        d = PyFloat_AsDouble(obj)
        if kind == K_F32:
            (<float *>buf)[0] = <float>d
        else:
            memcpy(buf, &d, 8)
        return 1
    if kind <= K_U64 or kind == K_BOOL:
        # No try/except here: Cython saves the exception state on entering
        # one, which costs more than the conversion.
        u = _as_ull(obj)
        if u == <unsigned long long>-1 and PyErr_Occurred() != NULL:
            PyErr_Clear()
            _range_error(obj, what, dt)
        if kind == K_U32:
            if u > 0xffffffffULL:
                _range_error(obj, what, dt)
            (<uint32_t *>buf)[0] = <uint32_t>u
        elif kind == K_U64:
            memcpy(buf, &u, 8)
        elif kind == K_U8:
            if u > 0xff:
                _range_error(obj, what, dt)
            (<uint8_t *>buf)[0] = <uint8_t>u
        elif kind == K_U16:
            if u > 0xffff:
                _range_error(obj, what, dt)
            (<uint16_t *>buf)[0] = <uint16_t>u
        else:
            if u > 1:
                _range_error(obj, what, dt)
            (<uint8_t *>buf)[0] = <uint8_t>u
        return 1
    s = _as_ll(obj)
    if s == -1 and PyErr_Occurred() != NULL:
        PyErr_Clear()
        _range_error(obj, what, dt)
    if kind == K_I32:
        if s < -0x80000000LL or s > 0x7fffffffLL:
            _range_error(obj, what, dt)
        (<int32_t *>buf)[0] = <int32_t>s
    elif kind == K_I64:
        memcpy(buf, &s, 8)
    elif kind == K_I8:
        if s < -0x80 or s > 0x7f:
            _range_error(obj, what, dt)
        (<int8_t *>buf)[0] = <int8_t>s
    else:
        if s < -0x8000 or s > 0x7fff:
            _range_error(obj, what, dt)
        (<int16_t *>buf)[0] = <int16_t>s
    return 1


cdef inline int _uint_fast(int kind, object key, uint64_t *out) noexcept:
    """The common key or value, an exact non-negative int into a u32 or u64 field,
    packed without a call into _pack_scalar: 1 when done, 0 to take the
    full path (which packs everything else and raises on bad keys).
    """
    cdef unsigned long long u
    if not PyLong_CheckExact(key) or (kind != K_U32 and kind != K_U64):
        return 0
    u = _as_ull(key)
    if u == <unsigned long long>-1 and PyErr_Occurred() != NULL:
        PyErr_Clear()       # negative or too big: _pack_scalar says which
        return 0
    if kind == K_U32:
        if u > 0xffffffffULL:
            return 0
        (<uint32_t *>out)[0] = <uint32_t>u
    else:
        out[0] = u
    return 1


cdef object _unpack_scalar(int kind, const char *buf):
    """The C scalar at *buf* as a Python int, float or bool."""
    cdef uint64_t u
    cdef int64_t s
    cdef double d
    if kind == K_U64:
        memcpy(&u, buf, 8)
        return PyLong_FromUnsignedLongLong(u)
    if kind == K_U32:
        return PyLong_FromUnsignedLongLong((<uint32_t *>buf)[0])
    if kind == K_I64:
        memcpy(&s, buf, 8)
        return PyLong_FromLongLong(s)
    if kind == K_I32:
        return PyLong_FromLongLong((<int32_t *>buf)[0])
    if kind == K_F64:
        memcpy(&d, buf, 8)
        return PyFloat_FromDouble(d)
    if kind == K_F32:
        return PyFloat_FromDouble((<float *>buf)[0])
    if kind == K_U8:
        return PyLong_FromUnsignedLongLong((<uint8_t *>buf)[0])
    if kind == K_U16:
        return PyLong_FromUnsignedLongLong((<uint16_t *>buf)[0])
    if kind == K_I8:
        return PyLong_FromLongLong((<int8_t *>buf)[0])
    if kind == K_I16:
        return PyLong_FromLongLong((<int16_t *>buf)[0])
    if kind == K_BOOL:
        return (<uint8_t *>buf)[0] != 0
    raise AssertionError("not a scalar kind")


def cast_exact(obj, dt, str what):
    """*obj* as an array of *dt* under the one conversion rule of maps.

    Integers must be exact and fit (int64 -1 into uint64 is refused, not
    wrapped); floats go only into float fields (NaN or 3.5 never become an
    integer); strings are never numbers; structured dtypes take arrays that
    numpy casts with ``same_kind``. Raises TypeError or OutOfRangeError
    naming *what*. Returns *obj* itself when it already has dtype *dt*.
    """
    arr = obj if isinstance(obj, _np.ndarray) else _np.asarray(obj)
    src = arr.dtype
    if src == dt:
        return arr
    if src.hasobject:
        raise TypeError(f"{what} of dtype {src} hold Python objects; the map wants {dt}")
    if src.kind in "iub" and dt.kind in "iub" and dt.fields is None and src.fields is None:
        if arr.size and dt.kind != "b":
            info = _np.iinfo(dt)
            lo, hi = arr.min(), arr.max()
            if lo < info.min:
                _range_error(int(lo), what, dt)
            if hi > info.max:
                _range_error(int(hi), what, dt)
        elif arr.size and dt.kind == "b" and (arr.min() < 0 or arr.max() > 1):
            raise OutOfRangeError(f"{what} hold values other than 0 and 1, the type is {dt}")
        return arr.astype(dt)
    if src.kind in "fc" and dt.kind in "iub":
        raise TypeError(f"{what} of dtype {src} would lose their fractions as {dt}: "
                        f"convert them yourself")
    if src.kind in "USV" and dt.kind not in "USV" and dt.fields is None:
        raise TypeError(f"{what} of dtype {src} are not numbers; the map wants {dt}")
    if dt.kind == "V" and dt.fields is None and src.itemsize == dt.itemsize:
        return arr.view(dt)   # raw bytes of the right size, reinterpreted
    if not _np.can_cast(src, dt, "same_kind"):
        raise TypeError(f"{what} of dtype {src} cannot be converted to {dt} "
                        f"without loss (numpy same_kind casting)")
    try:
        return arr.astype(dt, casting="same_kind")
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} of dtype {src} cannot be converted to {dt}: {e}") from None


cdef int _check_fields(object obj, object dt, str what) except -1:
    """Apply the scalar rule to each field of a tuple for a structured *dt*
    (numpy itself would cast 3.5 into an int field without a word)."""
    cdef char tmp[16]
    names = dt.names
    if len(obj) != len(names):
        return 0        # numpy says what is wrong with the shape
    for name, item in zip(names, obj):
        fdt = dt.fields[name][0]
        fwhat = f"{what} field {name!r}"
        if fdt.fields is not None:
            if isinstance(item, tuple):
                _check_fields(item, fdt, fwhat)
            elif not isinstance(item, _np.void):
                raise TypeError(f"{fwhat} is a struct ({fdt}); give it a tuple, "
                                f"not {type(item).__name__}")
        elif fdt.subdtype is not None:
            base = fdt.subdtype[0]
            if base.kind in "iufb":
                cast_exact(item, base, fwhat)
        elif fdt.kind in "iufb" and fdt.itemsize <= 8:
            _pack_scalar(_scalar_kind(fdt.newbyteorder("="), fdt.itemsize), item, tmp,
                         fwhat, fdt)
    return 0


cdef int _pack_generic(object obj, char *buf, uint32_t size, object dt, str what) except -1:
    """Any other key or value: exact-size bytes, or one element of *dt*
    under the same rules as the scalar path (a struct takes a tuple or a
    record, never a scalar broadcast into every field)."""
    cdef _Buf b
    if isinstance(obj, (bytes, bytearray, memoryview)):
        b = _Buf()
        b.get(obj, False, what)
        if b.view.len != size:
            raise ValueError(f"{what} is {b.view.len} bytes, the map wants {size}")
        memcpy(buf, b.view.buf, size)
        return 0
    if dt is None:
        raise TypeError(f"{what} must be {size} bytes, not {type(obj).__name__}")
    if dt.kind == "V" and dt.fields is None and dt.subdtype is None:
        if _is_intlike(obj):
            # Raw-bytes keys (maps opened without dtypes) still take a plain
            # int, laid out like a native unsigned integer of that size.
            obj = PyNumber_Index(obj)
            if obj < 0:
                raise OutOfRangeError(f"{what} {obj} is negative")
            try:
                raw = (<object>obj).to_bytes(size, sys.byteorder)
            except OverflowError:
                raise OutOfRangeError(f"{what} {obj} does not fit {size} bytes") from None
            memcpy(buf, <char *>raw, size)
            return 0
        if not isinstance(obj, (_np.ndarray, _np.void)):
            raise TypeError(f"{what} must be {size} bytes (bytes, bytearray, a numpy "
                            f"value) or an int, not {type(obj).__name__}")
    if dt.fields is not None:
        if isinstance(obj, tuple):
            _check_fields(obj, dt, what)
        elif not isinstance(obj, (_np.void, _np.ndarray)):
            raise TypeError(f"{what} is a struct ({', '.join(dt.names)}); give a tuple "
                            f"or a record, not {type(obj).__name__} {obj!r}")
        elif isinstance(obj, _np.ndarray) and (<object>obj).dtype.fields is None:
            raise TypeError(f"{what} is a struct ({', '.join(dt.names)}); give a tuple "
                            f"or a record, not an array of {(<object>obj).dtype}")
        try:
            if isinstance(obj, _np.ndarray):
                arr = cast_exact(obj, dt, what)
            elif isinstance(obj, _np.void) and obj.dtype == dt:
                arr = _np.asarray(obj)  # its bytes as they are, padding included
            else:
                # Zeroed first: a field-by-field conversion leaves the padding
                # between fields uninitialised, and the kernel compares keys bytewise.
                arr = _np.zeros((), dtype=dt)
                arr[()] = obj
        except (TypeError, ValueError, OverflowError) as e:
            if isinstance(e, OutOfRangeError):
                raise
            raise TypeError(f"{what} {obj!r} cannot be converted to {dt}: {e}") from None
    else:
        kind = _scalar_kind(dt.newbyteorder("="), size) if dt.kind in "iufb" else K_OTHER
        if kind != K_OTHER and not isinstance(obj, _np.ndarray):
            # A non-native scalar: check it like a native one, then swap.
            tmp = bytearray(8)
            _pack_scalar(kind, obj, <char *>tmp, what, dt)
            arr = _np.frombuffer(bytes(tmp[:size]), dtype=dt.newbyteorder("=")).astype(dt)
        else:
            arr = cast_exact(obj, dt, what) if isinstance(obj, _np.ndarray) \
                else _np.asarray(obj, dtype=dt) if dt.subdtype is not None \
                else cast_exact(_np.asarray(obj), dt, what)
    if arr.ndim != 0 or arr.nbytes != size:
        raise ValueError(f"{what} {obj!r} has shape {arr.shape} ({arr.nbytes} bytes); "
                         f"the map wants one {dt} of {size} bytes")
    arr = _np.ascontiguousarray(arr)
    b = _Buf()
    b.get(arr, False, what)
    memcpy(buf, b.view.buf, size)
    return 0


cdef struct _Tmp:
    # Key and value buffers for one element operation: on the C stack when
    # they fit (the common case), else one heap block the caller frees.
    char *k
    char *v
    void *heap
    uint64_t stack[_STACK_WORDS]


cdef object _SUM_MISSING = object()   # MapBase.sum()'s "no default given"

cdef extern from *:
    # GCC/Clang builtins: the add, and whether it overflowed.
    bint _add_u64 "__builtin_add_overflow"(uint64_t, uint64_t, uint64_t *) noexcept nogil
    bint _add_i64 "__builtin_add_overflow"(int64_t, int64_t, int64_t *) noexcept nogil


cdef object _sum_cpus(int kind, const char *buf, uint32_t stride):
    """The sum of the _NCPUS scalars of *kind* at *buf*, *stride* bytes apart,
    as an exact Python int (or float): C arithmetic while it cannot
    overflow, Python ints from the first overflow on (a u64 counter summed
    over CPUs can pass 2**64)."""
    cdef uint64_t u = 0, x
    cdef int64_t s = 0, y
    cdef double d = 0
    cdef Py_ssize_t i, n = _NCPUS
    cdef const char *p
    if kind == K_F32 or kind == K_F64:
        for i in range(n):
            p = buf + i * stride
            d += (<const float *>p)[0] if kind == K_F32 else (<const double *>p)[0]
        return d
    if kind == K_I8 or kind == K_I16 or kind == K_I32 or kind == K_I64:
        for i in range(n):
            p = buf + i * stride
            if kind == K_I64:
                y = (<const int64_t *>p)[0]
            elif kind == K_I32:
                y = (<const int32_t *>p)[0]
            elif kind == K_I16:
                y = (<const int16_t *>p)[0]
            else:
                y = (<const int8_t *>p)[0]
            if _add_i64(s, y, &s):
                return _sum_slow(kind, buf, stride)
        return PyLong_FromLongLong(s)
    for i in range(n):
        p = buf + i * stride
        if kind == K_U64:
            x = (<const uint64_t *>p)[0]
        elif kind == K_U32:
            x = (<const uint32_t *>p)[0]
        elif kind == K_U16:
            x = (<const uint16_t *>p)[0]
        elif kind == K_BOOL:
            x = (<const uint8_t *>p)[0] != 0
        else:
            x = (<const uint8_t *>p)[0]
        if _add_u64(u, x, &u):
            return _sum_slow(kind, buf, stride)
    return PyLong_FromUnsignedLongLong(u)


cdef object _sum_slow(int kind, const char *buf, uint32_t stride):
    cdef Py_ssize_t i
    total = 0
    for i in range(_NCPUS):
        total += int(_unpack_scalar(kind, buf + i * stride))
    return total


cdef class MapBase:
    """The per-element fast path of :class:`fastbpf.Map` (do not use directly).

    Implements ``m[k]``, ``m[k] = v``, ``del m[k]``, ``k in m``, ``lookup``,
    ``update``, ``delete`` and ``pop`` in C. Keys and values of one scalar
    numeric dtype are converted in C without intermediate objects, and come
    back as Python ``int``/``float``/``bool``; per-CPU values are written by
    the kernel straight into the numpy array returned.
    """
    cdef int _fd
    cdef object _fdobj
    cdef readonly uint32_t map_type
    cdef readonly uint32_t key_size
    cdef readonly uint32_t value_size
    cdef readonly uint32_t max_entries
    cdef readonly uint32_t flags
    cdef readonly object name
    cdef object _kdt, _vdt
    cdef int _kkind, _vkind, _vmode
    cdef bint _vnative          # the value dtype is a native scalar (see _get_value)
    cdef bint _fast             # scalar key and plain scalar value: see __getitem__
    cdef uint32_t _vstride      # bytes the kernel reads/writes per value
    cdef uint32_t _cpu_stride   # per-CPU: round_up(value_size, 8)
    cdef uint32_t _tmpk         # key_size rounded up to 8 (value offset in a _Tmp)
    cdef object _percpu_last    # the per-CPU result returned last (see _new_percpu)
    cdef char *_percpu_data

    def __cinit__(self, *args, **kwargs):
        self._fd = -1

    def _init_handle(self, FD fd, uint32_t map_type, uint32_t key_size, uint32_t value_size,
                     uint32_t max_entries, uint32_t flags, name, key_dtype, value_dtype,
                     bint percpu, bint fd_values):
        """Bind this object to a map (called by the Python constructors)."""
        if self._fd >= 0:
            raise RuntimeError("map handle already initialised")
        self.map_type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.name = name
        for dt in (key_dtype, value_dtype):
            if dt is not None and dt.hasobject:
                raise TypeError(f"dtype {dt} holds Python objects; maps hold plain bytes")
        self._kdt = key_dtype
        self._vdt = value_dtype
        self._kkind = _scalar_kind(key_dtype, key_size)
        self._vkind = _scalar_kind(value_dtype, value_size)
        self._vnative = (value_dtype is not None and value_dtype.fields is None
                         and value_dtype.subdtype is None and value_dtype.kind in "iufb")
        self._cpu_stride = (value_size + 7) & ~7u
        self._tmpk = (key_size + 7) & ~7u
        if percpu:
            self._vmode = V_PERCPU
            self._vstride = self._cpu_stride * <uint32_t>_NCPUS
        elif fd_values:
            self._vmode = V_FD
            self._vstride = value_size
        else:
            self._vmode = V_PLAIN
            self._vstride = value_size
        self._fast = (self._kkind != K_OTHER and self._vkind != K_OTHER
                      and self._vmode == V_PLAIN and key_size <= 8 and value_size <= 8)
        self._fdobj = fd
        self._fd = fd.fd

    # -- state ---------------------------------------------------------------

    @property
    def fd(self):
        """The map's file descriptor; raises ClosedError once closed."""
        if self._fd < 0:
            self._closed()
        return self._fd

    @property
    def closed(self):
        """True once the map was closed."""
        return self._fd < 0

    @property
    def key_dtype(self):
        """numpy dtype of keys (raw bytes ``V<n>`` when nothing better is known)."""
        return self._kdt

    @property
    def value_dtype(self):
        """numpy dtype of one value (of one CPU's value, for per-CPU maps)."""
        return self._vdt

    @property
    def percpu(self):
        """True when values are per CPU."""
        return self._vmode == V_PERCPU

    @property
    def value_stride(self):
        """Bytes of one value as the kernel transfers it (all CPUs, 8-byte
        aligned, for per-CPU maps)."""
        return self._vstride

    def close(self):
        """Release the map's file descriptor. Closing twice is harmless.

        Batch operations running in other threads hold their own duplicate
        of the descriptor, so they finish on this map, never on whatever
        object the kernel gives the number to next."""
        self._fd = -1
        if self._fdobj is not None:
            self._fdobj.close()
            self._fdobj = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    cdef int _closed(self) except -1:
        raise ClosedError(f"map {self.name!r} is closed")

    cdef str _what(self):
        return f"map {self.name!r}" if self.name else f"map (fd {self._fd})"

    def _own_fd(self):
        """A private duplicate of the map's fd (an :class:`FD`), for work done
        with the GIL released: a close() from another thread then cannot let
        the kernel hand the number to a new object mid-call."""
        if self._fd < 0:
            self._closed()
        return FD(_dup_fd(self._fd))

    # -- conversion ----------------------------------------------------------

    cdef inline int _tmp_init(self, _Tmp *t) except -1:
        """Point *t*'s key and value buffers at its stack area, or at one
        heap block for big keys/values (the caller frees t.heap)."""
        cdef size_t need = self._tmpk + self._vstride + 8
        t.heap = NULL
        if need <= _STACK_BYTES:
            t.k = <char *>t.stack
        else:
            t.heap = PyMem_Malloc(need)
            if t.heap == NULL:
                raise MemoryError()
            t.k = <char *>t.heap
        t.v = t.k + self._tmpk
        return 0

    cdef inline int _put_key(self, object key, char *buf) except -1:
        if self._fd < 0:
            self._closed()
        if self.key_size == 0:
            if key is not None:
                raise TypeError(f"{self._what()} has no keys; use push/pop/peek")
            return 0
        if self._kkind != K_OTHER:
            if _pack_scalar(self._kkind, key, buf, "key", self._kdt):
                return 0
        return _pack_generic(key, buf, self.key_size, self._kdt, "key")

    cdef int _put_value(self, object value, char *buf) except -1:
        cdef uint32_t i, n
        cdef char *src
        if self._vmode == V_FD:
            if hasattr(value, "fd"):
                value = value.fd
            if not _is_intlike(value):
                raise TypeError(f"{self._what()} holds file descriptors: store a Map, "
                                f"a Program or an fd, not {type(value).__name__}")
            value = PyNumber_Index(value)
            if value < 0 or value > 0x7fffffff:
                raise ValueError(f"{value} is not a file descriptor")
            (<uint32_t *>buf)[0] = <uint32_t>value
            return 0
        if self._vmode == V_PLAIN:
            if _pack_scalar(self._vkind, value, buf, "value", self._vdt):
                return 0
            return _pack_generic(value, buf, self.value_size, self._vdt, "value")
        # per-CPU: one value for every CPU, or one per CPU. The padding after
        # each CPU's value goes to the kernel too: make it zeros.
        n = <uint32_t>_NCPUS
        memset(buf, 0, self._vstride)
        if not _pack_scalar(self._vkind, value, buf, "value", self._vdt):
            if isinstance(value, (bytes, bytearray)) or (
                    not isinstance(value, (list, tuple, _np.ndarray))):
                _pack_generic(value, buf, self.value_size, self._vdt, "value")
            elif self._vdt.fields is not None and isinstance(value, tuple):
                _pack_generic(value, buf, self.value_size, self._vdt, "value")
            else:
                arr = cast_exact(value, self._vdt, "per-CPU values")
                if arr.ndim == 0:
                    _pack_generic(arr, buf, self.value_size, self._vdt, "value")
                elif arr.shape != (n,):
                    raise ValueError(f"per-CPU value has shape {arr.shape}; "
                                     f"{self._what()} wants ({n},) (one per possible CPU) "
                                     f"or a single value for all CPUs")
                else:
                    arr = _np.ascontiguousarray(arr)
                    b = _Buf()
                    b.get(arr, False, "value")
                    src = <char *>b.view.buf
                    for i in range(n):
                        memcpy(buf + i * self._cpu_stride, src + i * self.value_size, self.value_size)
                    return 0
        # replicate CPU 0's value to every CPU
        for i in range(1, n):
            memcpy(buf + i * self._cpu_stride, buf, self.value_size)
        return 0

    cdef object _new_percpu(self, char **data):
        """An (ncpus,) array of the value dtype with the kernel's stride, for
        the kernel to write into.

        The array returned last time is reused when nobody else holds it any
        more (its only reference is ours): a loop over ``m[k]`` that drops
        each result then costs no allocation. An array the caller kept, or
        anything viewing it, holds a reference, so it is never overwritten.
        """
        cdef cnp.npy_intp dims[1]
        cdef cnp.npy_intp strides[1]
        cached = self._percpu_last
        if cached is not None and Py_REFCNT(cached) == 2 \
                and cnp.PyArray_DATA(<cnp.ndarray>cached) == <void *>self._percpu_data \
                and cnp.PyArray_DIM(<cnp.ndarray>cached, 0) == _NCPUS \
                and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>cached):
            # 2 references: self._percpu_last and the local `cached`.
            data[0] = self._percpu_data
            return cached
        dims[0] = _NCPUS
        strides[0] = self._cpu_stride
        Py_INCREF(self._vdt)  # PyArray_NewFromDescr* steal a descr reference
        if self._cpu_stride == self.value_size:
            arr = _np_new(<PyObject *>self._vdt, 1, dims, NULL, NULL, 0)
            data[0] = <char *>cnp.PyArray_DATA(<cnp.ndarray>arr)
            self._percpu_last = arr
            self._percpu_data = data[0]
            return arr
        # value_size is not a multiple of 8: view a raw buffer with the
        # kernel's stride so the kernel still writes straight into the result.
        raw = _np.zeros(self._vstride, dtype=_np.uint8)
        data[0] = <char *>cnp.PyArray_DATA(<cnp.ndarray>raw)
        arr = _np_new(<PyObject *>self._vdt, 1, dims, strides, data[0],
                      NPY_ARRAY_WRITEABLE | NPY_ARRAY_ALIGNED)
        Py_INCREF(raw)
        _np_set_base(arr, <PyObject *>raw)
        self._percpu_last = arr
        self._percpu_data = data[0]
        return arr

    cdef object _get_value(self, char *buf):
        if self._vmode == V_FD:
            return self._from_value_id((<uint32_t *>buf)[0])
        if self._vkind != K_OTHER:
            return _unpack_scalar(self._vkind, buf)
        if self._vnative:
            # A scalar of another byte order: the same Python type as above.
            return _np_scalar(buf, self._vdt, NULL).item()
        # numpy copies value_size bytes into a new scalar: a scalar owns its data.
        return _np_scalar(buf, self._vdt, NULL)

    def _from_value_id(self, id):
        """Turn the id stored in a map-in-map or program array into an object
        (overridden by the Python layer)."""
        return id

    # -- element operations --------------------------------------------------

    cdef object _lookup(self, object key, bint delete, object default, bint raise_missing):
        cdef char *out
        cdef long r
        cdef int code
        cdef int cmd = BPF_MAP_LOOKUP_AND_DELETE_ELEM if delete else BPF_MAP_LOOKUP_ELEM
        cdef _Tmp t
        self._tmp_init(&t)
        try:
            self._put_key(key, t.k)
            if self._vmode == V_PERCPU:
                result = self._new_percpu(&out)
            else:
                out = t.v
            r = _elem(cmd, self._fd, t.k if self.key_size else NULL, out, 0)
            if r < 0:
                code = errno
                if code == ENOENT:
                    if raise_missing:
                        raise KeyError(key)
                    return default
                raise _err(code, "map lookup_and_delete" if delete else "map lookup",
                           self._what())
            if self._vmode == V_PERCPU:
                return result
            return self._get_value(t.v)
        finally:
            if t.heap != NULL:
                PyMem_Free(t.heap)

    def __getitem__(self, key):
        # The hot path of metrics agents: for a scalar key and value, the
        # key is packed into a register-sized local, the kernel writes the
        # value into another, and a Python int/float comes back. No
        # allocation but the result; everything else goes through _lookup.
        cdef uint64_t kb, vb
        cdef int code
        cdef char *out
        if self._fast and self._fd >= 0:
            if _uint_fast(self._kkind, key, &kb) or \
                    _pack_scalar(self._kkind, key, <char *>&kb, "key", self._kdt):
                if _elem(BPF_MAP_LOOKUP_ELEM, self._fd, &kb, &vb, 0) == 0:
                    if self._vkind == K_U64:
                        return PyLong_FromUnsignedLongLong(vb)
                    return _unpack_scalar(self._vkind, <char *>&vb)
                code = errno
                if code == ENOENT:
                    raise KeyError(key)
                raise _err(code, "map lookup", self._what())
        elif self._vmode == V_PERCPU and self._kkind != K_OTHER and self._fd >= 0 \
                and self.key_size <= 8:
            if _uint_fast(self._kkind, key, &kb) or \
                    _pack_scalar(self._kkind, key, <char *>&kb, "key", self._kdt):
                result = self._new_percpu(&out)
                if _elem(BPF_MAP_LOOKUP_ELEM, self._fd, &kb, out, 0) == 0:
                    return result
                code = errno
                if code == ENOENT:
                    raise KeyError(key)
                raise _err(code, "map lookup", self._what())
        return self._lookup(key, False, None, True)

    def lookup(self, key, default=None):
        """The value at *key*, or *default* when the key is missing.

        Integer, float and bool values come back as Python ``int``,
        ``float`` and ``bool``; structured and raw values as numpy records;
        per-CPU maps give an array of shape (possible CPUs,) that the kernel
        filled in place.
        """
        return self._lookup(key, False, default, False)

    def get(self, key, default=None):
        """Same as :meth:`lookup` (dict protocol)."""
        return self._lookup(key, False, default, False)

    # Not bound (a method descriptor): the interpreter then calls it as a
    # builtin with no bound-method object in between (~15 ns of a ~1 us call).
    # No text signature: inspect takes only literal defaults.
    @cython.binding(False)
    def sum(self, key, default=_SUM_MISSING):
        """The total of *key*'s per-CPU values: one lookup, added up in C.

        What a per-CPU counter means: ``m.sum(k)`` equals ``sum(m[k].tolist())``
        but costs one bpf(2) lookup and no numpy objects. Integer values
        give an exact Python ``int`` (no wrap-around), float values a
        ``float``, bool values the number of CPUs holding True. A structured
        value gives a record of the value dtype whose fields are the per-CPU
        sums of each numeric field (wrapping in the field's type).

        A missing key raises KeyError unless *default* is given. Maps whose
        values are not per CPU raise TypeError.
        """
        cdef uint64_t kb
        cdef uint64_t vbuf[_STACK_WORDS]
        cdef int code
        cdef _Tmp t
        if self._vmode != V_PERCPU:
            if self._fd < 0:
                self._closed()
            raise TypeError(f"{self._what()}: sum() adds up per-CPU values, and this map's "
                            f"values are not per CPU (read them with m[key])")
        if self._vkind == K_OTHER or self._kkind == K_OTHER or self.key_size > 8 \
                or self._fd < 0:
            return self._sum_generic(key, default)
        if not (_uint_fast(self._kkind, key, &kb) or
                _pack_scalar(self._kkind, key, <char *>&kb, "key", self._kdt)):
            return self._sum_generic(key, default)
        if self._vstride <= _STACK_BYTES:    # the common case: no heap, no try
            if _elem(BPF_MAP_LOOKUP_ELEM, self._fd, &kb, vbuf, 0) == 0:
                return _sum_cpus(self._vkind, <char *>vbuf, self._cpu_stride)
            code = errno
        else:
            self._tmp_init(&t)
            try:
                if _elem(BPF_MAP_LOOKUP_ELEM, self._fd, &kb, t.v, 0) == 0:
                    return _sum_cpus(self._vkind, t.v, self._cpu_stride)
                code = errno
            finally:
                if t.heap != NULL:
                    PyMem_Free(t.heap)
        if code == ENOENT:
            if default is _SUM_MISSING:
                raise KeyError(key)
            return default
        raise _err(code, "map lookup", self._what())

    def _sum_generic(self, key, default):
        """sum() for keys and values the C path does not take."""
        arr = self._lookup(key, False, _SUM_MISSING, default is _SUM_MISSING)
        if arr is _SUM_MISSING:
            return default
        dt = self._vdt
        if dt is not None and dt.fields is None and dt.subdtype is None and dt.kind in "iufb":
            return sum(arr.tolist())     # Python numbers: exact for integers
        if dt is not None and dt.names and all(
                dt.fields[n][0].kind in "iufb" and dt.fields[n][0].subdtype is None
                for n in dt.names):
            rec = _np.zeros((), dtype=dt)
            for n in dt.names:
                rec[n] = arr[n].sum(dtype=dt.fields[n][0])
            return rec[()]
        raise TypeError(f"{self._what()}: sum() adds up numeric per-CPU values, not {dt}; "
                        f"read the per-CPU array with m[key]")

    _MISSING = object()

    def pop(self, key=None, default=_MISSING):
        """Remove *key* and return its value (BPF_MAP_LOOKUP_AND_DELETE_ELEM).

        For queues and stacks call it without a key. Raises KeyError when
        the key is missing (or the queue empty) and no *default* is given.
        """
        cdef bint raise_missing = default is MapBase._MISSING
        return self._lookup(key, True, None if raise_missing else default, raise_missing)

    def __contains__(self, key):
        cdef long r
        cdef int code
        cdef _Tmp t
        cdef uint64_t kb, vb
        if self._fast and self._fd >= 0:
            if _uint_fast(self._kkind, key, &kb) or \
                    _pack_scalar(self._kkind, key, <char *>&kb, "key", self._kdt):
                if _elem(BPF_MAP_LOOKUP_ELEM, self._fd, &kb, &vb, 0) == 0:
                    return True
                code = errno
                if code == ENOENT:
                    return False
                raise _err(code, "map lookup", self._what())
        if self.key_size == 0 and self._fd >= 0:
            return self._bloom_contains(key)
        self._tmp_init(&t)
        try:
            self._put_key(key, t.k)
            r = _elem(BPF_MAP_LOOKUP_ELEM, self._fd, t.k, t.v, 0)
            if r < 0:
                code = errno
                if code == ENOENT:
                    return False
                raise _err(code, "map lookup", self._what())
            return True
        finally:
            if t.heap != NULL:
                PyMem_Free(t.heap)

    cdef object _bloom_contains(self, object value):
        cdef long r
        cdef int code
        cdef _Tmp t
        if self.map_type != 30:  # BPF_MAP_TYPE_BLOOM_FILTER
            raise TypeError(f"{self._what()} has no keys; 'in' works for bloom filters only")
        self._tmp_init(&t)
        try:
            self._put_value(value, t.v)
            r = _elem(BPF_MAP_LOOKUP_ELEM, self._fd, NULL, t.v, 0)
            if r < 0:
                code = errno
                if code == ENOENT:
                    return False
                raise _err(code, "map lookup", self._what())
            return True
        finally:
            if t.heap != NULL:
                PyMem_Free(t.heap)

    cdef int _update(self, object key, object value, uint64_t flags) except -1:
        cdef long r
        cdef _Tmp t
        self._tmp_init(&t)
        try:
            self._put_key(key, t.k)
            self._put_value(value, t.v)
            r = _elem(BPF_MAP_UPDATE_ELEM, self._fd, t.k if self.key_size else NULL, t.v, flags)
            if r < 0:
                self._update_error(errno)
            return 0
        finally:
            if t.heap != NULL:
                PyMem_Free(t.heap)

    cdef int _update_error(self, int code) except -1:
        hint = None
        if code == E2BIG:
            if self.map_type in (2, 3, 4, 6, 8, 12, 14, 15, 16, 17):   # array-like
                hint = f"index out of range (max_entries={self.max_entries})"
            else:
                hint = f"map full (max_entries={self.max_entries})"
        elif code == EPERM and self.map_type != 30:
            hint = "frozen maps (Map.freeze) cannot be written from user space"
        raise _err(code, "map update", self._what(), hint)

    def __setitem__(self, key, value):
        cdef uint64_t kb, vb
        if self._fast and self._fd >= 0:
            if (_uint_fast(self._kkind, key, &kb)
                    or _pack_scalar(self._kkind, key, <char *>&kb, "key", self._kdt)) and \
                    (_uint_fast(self._vkind, value, &vb)
                     or _pack_scalar(self._vkind, value, <char *>&vb, "value", self._vdt)):
                if _elem(BPF_MAP_UPDATE_ELEM, self._fd, &kb, &vb, 0) < 0:
                    self._update_error(errno)
                return
        self._update(key, value, 0)

    def update(self, key, value, flags=0):
        """Set *key* to *value*; *flags* is an :class:`UpdateFlags`
        (NOEXIST: create only, EXIST: replace only, LOCK: spin-locked value)."""
        self._update(key, value, flags)

    def push(self, value, flags=0):
        """Push *value* into a queue, stack or bloom filter."""
        if self.key_size:
            raise TypeError(f"{self._what()} has keys; use m[key] = value")
        self._update(None, value, flags)

    def peek(self, default=_MISSING):
        """The next value of a queue or stack, without removing it."""
        if self.key_size:
            raise TypeError(f"{self._what()} has keys; use m[key]")
        cdef bint raise_missing = default is MapBase._MISSING
        return self._lookup(None, False, None if raise_missing else default, raise_missing)

    cdef int _delete(self, object key, bint raise_missing) except -1:
        cdef long r
        cdef int code
        cdef _Tmp t
        self._tmp_init(&t)
        try:
            self._put_key(key, t.k)
            r = _elem(BPF_MAP_DELETE_ELEM, self._fd, t.k, NULL, 0)
            if r < 0:
                code = errno
                if code == ENOENT:
                    if raise_missing:
                        raise KeyError(key)
                    return 0
                raise _err(code, "map delete", self._what())
            return 1
        finally:
            if t.heap != NULL:
                PyMem_Free(t.heap)

    def __delitem__(self, key):
        self._delete(key, True)

    def delete(self, key, missing_ok=False):
        """Delete *key*. Raises KeyError if it is missing, unless *missing_ok*.

        Returns True when an entry was deleted.
        """
        return bool(self._delete(key, not missing_ok))

    # -- helpers for the Python layer ------------------------------------------

    def _pack_key(self, key):
        """The key's bytes as the kernel sees them."""
        buf = bytearray(self.key_size + 8)
        self._put_key(key, <char *>buf)
        return bytes(buf[:self.key_size])

    def _pack_value(self, value):
        """The value's bytes as the kernel takes them (all CPUs for per-CPU)."""
        if self._fd < 0:
            self._closed()
        buf = bytearray(self._vstride + 8)
        self._put_value(value, <char *>buf)
        return bytes(buf[:self._vstride])

    def _scan_keys(self, keys_out):
        """Walk BPF_MAP_GET_NEXT_KEY into the uint8 buffer *keys_out*.

        Returns the number of keys written; stops when the buffer is full.
        """
        if self._fd < 0:
            self._closed()
        cdef _Buf b = _Buf()
        b.get(keys_out, True, "keys")
        cdef char *out = <char *>b.view.buf
        cdef Py_ssize_t cap = b.view.len // self.key_size if self.key_size else 0
        cdef Py_ssize_t n = 0
        cdef long r = 0
        cdef int code = 0
        cdef uint32_t ks = self.key_size
        # A private fd while the GIL is free: a close() from another thread
        # cannot hand our number to some other object mid-walk.
        cdef int fd = _dup_fd(self._fd)
        try:
            with nogil:
                while n < cap:
                    r = _elem(BPF_MAP_GET_NEXT_KEY, fd, (out + (n - 1) * ks) if n else NULL,
                              out + n * ks, 0)
                    if r < 0:
                        code = errno
                        break
                    n += 1
        finally:
            c_close(fd)
        if n < cap and r < 0 and code != ENOENT:
            raise _err(code, "map get_next_key", self._what())
        return n

    def _lookup_many(self, keys_in, values_out, Py_ssize_t count):
        """Look up *count* packed keys one by one into *values_out*.

        Returns a uint8 array marking which keys were found. The fallback
        for maps without batch operations.
        """
        if self._fd < 0:
            self._closed()
        cdef _Buf kb = _Buf(), vb = _Buf()
        kb.get(keys_in, False, "keys")
        vb.get(values_out, True, "values")
        if count * self.key_size > kb.view.len or count * self._vstride > vb.view.len:
            raise ValueError("buffers too small")
        found = _np.zeros(count, dtype=_np.uint8)
        cdef uint8_t *f = <uint8_t *>cnp.PyArray_DATA(<cnp.ndarray>found)
        cdef char *kp = <char *>kb.view.buf
        cdef char *vp = <char *>vb.view.buf
        cdef Py_ssize_t i
        cdef long r
        cdef int bad = 0
        cdef int fd = _dup_fd(self._fd)   # see _scan_keys
        try:
            with nogil:
                for i in range(count):
                    r = _elem(BPF_MAP_LOOKUP_ELEM, fd, kp + i * self.key_size,
                              vp + i * self._vstride, 0)
                    if r == 0:
                        f[i] = 1
                    elif errno != ENOENT:
                        bad = errno
                        break
        finally:
            c_close(fd)
        if bad:
            raise _err(bad, "map lookup", self._what())
        return found
