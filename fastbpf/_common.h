/* C helpers shared by fastbpf's extension modules (declared for Cython in
 * fastbpf/_common.pxd). Macros, so they expand after numpy's headers in the
 * module that uses them. */
#ifndef FASTBPF_COMMON_H
#define FASTBPF_COMMON_H

/* Casting wrappers: numpy declares these with its own pointer types. */
#define fbpf_np_scalar(data, descr, base) \
    PyArray_Scalar((data), (PyArray_Descr *)(descr), (base))
#define fbpf_np_new(descr, nd, dims, strides, data, flags) \
    PyArray_NewFromDescr(&PyArray_Type, (PyArray_Descr *)(descr), (nd), (dims), \
                         (strides), (data), (flags), NULL)
#define fbpf_np_set_base(arr, base) \
    PyArray_SetBaseObject((PyArrayObject *)(arr), (base))

/* Retire an array that points into memory about to be reused (a view of a
 * ring): it becomes an empty, read-only array (numpy has no way to make
 * reads raise). Its base stays, so arrays derived from it keep their memory
 * mapped. An array that owns its data is only made read-only: numpy frees
 * (or caches) an owner's data pointer, which must stay its own. */
static char fbpf_np_retired_[64] __attribute__((aligned(64)));
#define fbpf_np_retire(arr) do { \
        PyArrayObject_fields *f_ = (PyArrayObject_fields *)(arr); \
        if (!(f_->flags & NPY_ARRAY_OWNDATA)) { \
            f_->data = fbpf_np_retired_; \
            for (int i_ = 0; i_ < f_->nd; i_++) f_->dimensions[i_] = 0; \
        } \
        PyArray_CLEARFLAGS((PyArrayObject *)(arr), NPY_ARRAY_WRITEABLE); \
    } while (0)

#endif /* FASTBPF_COMMON_H */
