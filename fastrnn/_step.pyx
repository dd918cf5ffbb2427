# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The thin Cython entry point for Stream.step: checks a float32 / int64 C-contiguous numpy input
with the numpy C API and calls the C++ step through a function pointer (no pybind11 dispatch).
Anything else - other dtypes, lists, wrong shapes, errors - goes through the pybind11 step,
which converts and raises the fully worded error.  Ids take int64 arrays only here: float ids
(``np.array([1.7])``) go to the pybind11 step, which applies the one rule of
``fastrnn.runtime.ids_array`` (integral floats only; never truncated).  Measured against pybind11 in
benchmarks (fastrnn bench --stream reports both)."""
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdint cimport int64_t

import numpy as np

cnp.import_array()

cdef extern from *:
    """
    #include <stdint.h>
    typedef struct FastrnnStepApi {
      int (*step)(void* ctx, const float* x, const int64_t* ids, float* out);
      void* ctx;
      long long batch, in_features, out_features;
      int takes_ids;
      int release_gil;
    } FastrnnStepApi;
    """
    ctypedef struct FastrnnStepApi:
        int (*step)(void* ctx, const float* x, const int64_t* ids, float* out) nogil
        void* ctx
        long long batch, in_features, out_features
        int takes_ids
        int release_gil


cdef class FastStep:
    cdef FastrnnStepApi* api
    cdef object owner
    cdef object fallback
    cdef cnp.npy_intp out_dims[2]

    def __init__(self, stream):
        self.owner = stream  # keeps the C++ stream (api.ctx) alive
        self.fallback = stream.step
        self.api = <FastrnnStepApi*>PyCapsule_GetPointer(stream._step_api(), "fastrnn.step_api")
        self.out_dims[0] = self.api.batch
        self.out_dims[1] = self.api.out_features

    def __call__(self, x, out=None):
        cdef cnp.ndarray a, o
        cdef int rc
        cdef const float* xp = NULL
        cdef const int64_t* ip = NULL
        cdef float* op
        if type(x) is not np.ndarray:
            return self.fallback(x, out)
        a = <cnp.ndarray>x
        # native byte order and aligned: the typenum alone does not say (a '>f4' array is NPY_FLOAT32 too)
        if (cnp.PyArray_NDIM(a) < 1 or not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISNOTSWAPPED(a)
                or not cnp.PyArray_ISALIGNED(a) or cnp.PyArray_DIM(a, 0) != self.api.batch):
            return self.fallback(x, out)
        if self.api.takes_ids:
            if cnp.PyArray_TYPE(a) != cnp.NPY_INT64 or cnp.PyArray_NDIM(a) != 1:
                return self.fallback(x, out)
            ip = <const int64_t*>cnp.PyArray_DATA(a)
        else:
            if (cnp.PyArray_TYPE(a) != cnp.NPY_FLOAT32 or cnp.PyArray_NDIM(a) != 2
                    or cnp.PyArray_DIM(a, 1) != self.api.in_features):
                return self.fallback(x, out)
            xp = <const float*>cnp.PyArray_DATA(a)
        if out is None:
            o = cnp.PyArray_EMPTY(2, self.out_dims, cnp.NPY_FLOAT32, 0)
        else:
            if type(out) is not np.ndarray:
                return self.fallback(x, out)
            o = <cnp.ndarray>out
            if (cnp.PyArray_TYPE(o) != cnp.NPY_FLOAT32 or not cnp.PyArray_IS_C_CONTIGUOUS(o)
                    or not cnp.PyArray_ISBEHAVED(o) or cnp.PyArray_NDIM(o) != 2
                    or cnp.PyArray_DIM(o, 0) != self.api.batch or cnp.PyArray_DIM(o, 1) != self.api.out_features):
                return self.fallback(x, out)
        op = <float*>cnp.PyArray_DATA(o)
        if self.api.release_gil:
            with nogil:
                rc = self.api.step(self.api.ctx, xp, ip, op)
        else:  # a step of a microsecond or two: not worth the GIL's release (stream.cc, kHoldGilMacs)
            rc = self.api.step(self.api.ctx, xp, ip, op)
        if rc != 0:
            return self.fallback(x, out)
        return o
