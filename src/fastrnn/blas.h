// The only place that knows the BLAS (scipy-openblas32, symbols prefixed scipy_).
#pragma once
#include <string>

namespace fastrnn::blas {

// C[m,n] = alpha * A[m,k] * op(B) + beta * C, row-major.  trans_b: B is stored [n,k].
void sgemm(bool trans_b, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
           float beta, float* c, int ldc);
void set_num_threads(int n);
std::string name();

}  // namespace fastrnn::blas
