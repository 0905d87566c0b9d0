# Included by _core.pyx: the Map hot path.
#
# MapBase holds what every element operation needs (fd, sizes, dtypes, one
# scratch key and value buffer) and implements the dict protocol in C. The
# Python class fastbpf.maps.Map derives from it and adds everything that is
# not per-element (creation, pinning, batches, iteration, info).

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

# How values are handled beyond plain bytes.
cdef enum:
    V_PLAIN = 0
    V_PERCPU = 1
    V_FD = 2        # map-in-map, prog array: write an fd, read back an id
    V_NONE = 3      # value-less (e.g. no value at all)


cdef int _scalar_kind(object dt, uint32_t size):
    if dt is None or dt.itemsize != size or dt.fields is not None or dt.subdtype is not None:
        return K_OTHER
    if not dt.isnative:
        return K_OTHER
    k = dt.kind
    if k == "u" or k == "b":
        return {1: K_U8, 2: K_U16, 4: K_U32, 8: K_U64}.get(size, K_OTHER)
    if k == "i":
        return {1: K_I8, 2: K_I16, 4: K_I32, 8: K_I64}.get(size, K_OTHER)
    if k == "f":
        return {4: K_F32, 8: K_F64}.get(size, K_OTHER)
    return K_OTHER


cdef inline bint _is_intlike(object o):
    return PyLong_Check(o) or isinstance(o, _np.integer)


cdef int _pack_scalar(int kind, object obj, char *buf, str what, object dt) except -1:
    """Write a Python number into *buf* as the C scalar *kind*.

    Returns 1 when handled, 0 when *obj* is not a plain number."""
    cdef unsigned long long u
    cdef long long s
    cdef double d
    if kind == K_OTHER:
        return 0
    if kind <= K_I64:
        if not PyLong_Check(obj):
            if isinstance(obj, _np.integer) or isinstance(obj, _np.bool_):
                obj = PyNumber_Index(obj)
            elif obj is True or obj is False:
                obj = int(obj)
            else:
                return 0
        if kind <= K_U64:
            try:
                u = PyLong_AsUnsignedLongLong(obj)
            except OverflowError:
                if obj < 0:
                    raise ValueError(f"{what} {obj} is negative, but the {what} type is {dt}") \
                        from None
                raise ValueError(f"{what} {obj} does not fit {dt}") from None
            if kind == K_U8:
                if u > 0xff:
                    raise ValueError(f"{what} {obj} does not fit {dt}")
                (<uint8_t *>buf)[0] = <uint8_t>u
            elif kind == K_U16:
                if u > 0xffff:
                    raise ValueError(f"{what} {obj} does not fit {dt}")
                (<uint16_t *>buf)[0] = <uint16_t>u
            elif kind == K_U32:
                if u > 0xffffffffULL:
                    raise ValueError(f"{what} {obj} does not fit {dt}")
                (<uint32_t *>buf)[0] = <uint32_t>u
            else:
                memcpy(buf, &u, 8)
        else:
            try:
                s = PyLong_AsLongLong(obj)
            except OverflowError:
                raise ValueError(f"{what} {obj} does not fit {dt}") from None
            if kind == K_I8:
                if s < -0x80 or s > 0x7f:
                    raise ValueError(f"{what} {obj} does not fit {dt}")
                (<int8_t *>buf)[0] = <int8_t>s
            elif kind == K_I16:
                if s < -0x8000 or s > 0x7fff:
                    raise ValueError(f"{what} {obj} does not fit {dt}")
                (<int16_t *>buf)[0] = <int16_t>s
            elif kind == K_I32:
                if s < -0x80000000LL or s > 0x7fffffffLL:
                    raise ValueError(f"{what} {obj} does not fit {dt}")
                (<int32_t *>buf)[0] = <int32_t>s
            else:
                memcpy(buf, &s, 8)
        return 1
    # floats
    if PyFloat_Check(obj) or PyLong_Check(obj) or isinstance(obj, (_np.floating, _np.integer)):
        d = PyFloat_AsDouble(obj)
        if kind == K_F32:
            (<float *>buf)[0] = <float>d
        else:
            memcpy(buf, &d, 8)
        return 1
    return 0


cdef int _pack_generic(object obj, char *buf, uint32_t size, object dt, str what) except -1:
    """Any other key or value: exact-size bytes, or whatever numpy can turn
    into one element of *dt*."""
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
    if dt.kind == "V" and dt.fields is None and dt.subdtype is None and _is_intlike(obj):
        # Raw-bytes keys (maps opened without dtypes) still take a plain
        # int, laid out like a native unsigned integer of that size.
        obj = PyNumber_Index(obj)
        if obj < 0:
            raise ValueError(f"{what} {obj} is negative")
        try:
            raw = (<object>obj).to_bytes(size, sys.byteorder)
        except OverflowError:
            raise ValueError(f"{what} {obj} does not fit {size} bytes") from None
        memcpy(buf, <char *>raw, size)
        return 0
    try:
        if isinstance(obj, (_np.void, _np.ndarray)) and obj.dtype == dt:
            arr = _np.asarray(obj)  # its bytes as they are, padding included
        elif dt.fields is not None:
            # Zeroed first: a field-by-field conversion leaves the padding
            # between fields uninitialised, and the kernel compares keys bytewise.
            arr = _np.zeros((), dtype=dt)
            arr[()] = obj
        else:
            arr = _np.asarray(obj, dtype=dt)
    except (TypeError, ValueError, OverflowError) as e:
        raise TypeError(f"{what} {obj!r} cannot be converted to {dt}: {e}") from None
    if arr.ndim != 0 or arr.nbytes != size:
        raise ValueError(f"{what} {obj!r} has shape {arr.shape} ({arr.nbytes} bytes); "
                         f"the map wants one {dt} of {size} bytes")
    arr = _np.ascontiguousarray(arr)
    b = _Buf()
    b.get(arr, False, what)
    memcpy(buf, b.view.buf, size)
    return 0


cdef struct _Scratch:
    char *k
    char *v
    bint own


cdef class MapBase:
    """The per-element fast path of :class:`fastbpf.Map` (do not use directly).

    Implements ``m[k]``, ``m[k] = v``, ``del m[k]``, ``k in m``, ``lookup``,
    ``update``, ``delete`` and ``pop`` in C.
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
    cdef uint32_t _vstride      # bytes the kernel reads/writes per value
    cdef uint32_t _cpu_stride   # per-CPU: round_up(value_size, 8)
    cdef char *_kbuf
    cdef char *_vbuf
    cdef bint _busy             # the scratch buffers are lent out
    cdef object _percpu_last    # the per-CPU result returned last (see _new_percpu)
    cdef char *_percpu_data

    def __cinit__(self, *args, **kwargs):
        self._fd = -1
        self._kbuf = NULL
        self._vbuf = NULL

    def __dealloc__(self):
        PyMem_Free(self._kbuf)
        PyMem_Free(self._vbuf)

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
        self._cpu_stride = (value_size + 7) & ~7u
        if percpu:
            self._vmode = V_PERCPU
            self._vstride = self._cpu_stride * <uint32_t>_NCPUS
        elif fd_values:
            self._vmode = V_FD
            self._vstride = value_size
        else:
            self._vmode = V_PLAIN
            self._vstride = value_size
        self._kbuf = <char *>PyMem_Malloc(key_size + 8)
        self._vbuf = <char *>PyMem_Malloc(self._vstride + 8)
        if self._kbuf == NULL or self._vbuf == NULL:
            raise MemoryError()
        memset(self._kbuf, 0, key_size + 8)
        memset(self._vbuf, 0, self._vstride + 8)
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
        """Release the map's file descriptor. Closing twice is harmless."""
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

    # -- conversion ----------------------------------------------------------

    cdef inline int _put_key(self, object key, char *buf) except -1:
        if self._fd < 0:
            self._closed()
        if self.key_size == 0:
            if key is not None:
                raise TypeError(f"{self._what()} has no keys; use push/pop/peek")
            return 0
        if _pack_scalar(self._kkind, key, buf, "key", self._kdt):
            return 0
        return _pack_generic(key, buf, self.key_size, self._kdt, "key")

    cdef int _take(self, _Scratch *s) except -1:
        """Lend the map's key/value scratch buffers, or fresh ones if they
        are in use: converting a key may run Python code (a custom
        __index__, numpy, a finalizer), and another thread may then reach
        the same map before this operation is done with the buffers."""
        if not self._busy:
            self._busy = True
            s.k = self._kbuf
            s.v = self._vbuf
            s.own = True
            return 0
        s.own = False
        s.k = <char *>PyMem_Malloc(self.key_size + 8)
        s.v = <char *>PyMem_Malloc(self._vstride + 8)
        if s.k == NULL or s.v == NULL:
            PyMem_Free(s.k)
            PyMem_Free(s.v)
            raise MemoryError()
        memset(s.k, 0, self.key_size + 8)
        memset(s.v, 0, self._vstride + 8)
        return 0

    cdef inline void _give(self, _Scratch *s) noexcept:
        if s.own:
            self._busy = False
        else:
            PyMem_Free(s.k)
            PyMem_Free(s.v)

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
        # per-CPU: one value for every CPU, or one per CPU
        n = <uint32_t>_NCPUS
        if not _pack_scalar(self._vkind, value, buf, "value", self._vdt):
            if isinstance(value, (bytes, bytearray)) or (
                    not isinstance(value, (list, tuple, _np.ndarray))):
                _pack_generic(value, buf, self.value_size, self._vdt, "value")
            else:
                try:
                    arr = _np.asarray(value, dtype=self._vdt)
                except (TypeError, ValueError, OverflowError) as e:
                    raise TypeError(f"per-CPU value cannot be converted to {self._vdt}: {e}") from None
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
        cdef _Scratch s
        self._take(&s)
        try:
            self._put_key(key, s.k)
            if self._vmode == V_PERCPU:
                result = self._new_percpu(&out)
            else:
                out = s.v
            r = _elem(cmd, self._fd, s.k if self.key_size else NULL, out, 0)
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
            return self._get_value(s.v)
        finally:
            self._give(&s)

    def __getitem__(self, key):
        return self._lookup(key, False, None, True)

    def lookup(self, key, default=None):
        """The value at *key*, or *default* when the key is missing.

        Per-CPU maps give an array of shape (possible CPUs,) that the kernel
        filled in place.
        """
        return self._lookup(key, False, default, False)

    def get(self, key, default=None):
        """Same as :meth:`lookup` (dict protocol)."""
        return self._lookup(key, False, default, False)

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
        cdef _Scratch s
        if self.key_size == 0 and self._fd >= 0:
            return self._bloom_contains(key)
        self._take(&s)
        try:
            self._put_key(key, s.k)
            r = _elem(BPF_MAP_LOOKUP_ELEM, self._fd, s.k if self.key_size else NULL, s.v, 0)
            if r < 0:
                code = errno
                if code == ENOENT:
                    return False
                raise _err(code, "map lookup", self._what())
            return True
        finally:
            self._give(&s)

    cdef object _bloom_contains(self, object value):
        cdef long r
        cdef int code
        cdef _Scratch s
        if self.map_type != 30:  # BPF_MAP_TYPE_BLOOM_FILTER
            raise TypeError(f"{self._what()} has no keys; 'in' works for bloom filters only")
        self._take(&s)
        try:
            self._put_value(value, s.v)
            r = _elem(BPF_MAP_LOOKUP_ELEM, self._fd, NULL, s.v, 0)
            if r < 0:
                code = errno
                if code == ENOENT:
                    return False
                raise _err(code, "map lookup", self._what())
            return True
        finally:
            self._give(&s)

    cdef int _update(self, object key, object value, uint64_t flags) except -1:
        cdef long r
        cdef _Scratch s
        self._take(&s)
        try:
            self._put_key(key, s.k)
            self._put_value(value, s.v)
            r = _elem(BPF_MAP_UPDATE_ELEM, self._fd, s.k if self.key_size else NULL, s.v, flags)
            if r < 0:
                raise _err(errno, "map update", self._what())
            return 0
        finally:
            self._give(&s)

    def __setitem__(self, key, value):
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
        cdef _Scratch s
        self._take(&s)
        try:
            self._put_key(key, s.k)
            r = _elem(BPF_MAP_DELETE_ELEM, self._fd, s.k, NULL, 0)
            if r < 0:
                code = errno
                if code == ENOENT:
                    if raise_missing:
                        raise KeyError(key)
                    return 0
                raise _err(code, "map delete", self._what())
            return 1
        finally:
            self._give(&s)

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
