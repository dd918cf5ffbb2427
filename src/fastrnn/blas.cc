#include "fastrnn/blas.h"

#include <cblas.h>

extern "C" {
void scipy_openblas_set_num_threads(int);
char* scipy_openblas_get_config(void);
char* scipy_openblas_get_corename(void);
}

namespace fastrnn::blas {

void sgemm(bool trans_b, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
           float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // BLAS would leave C untouched for beta==1; handle k==0 ourselves for clarity
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    return;
  }
  scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb,
                    beta, c, ldc);
}

void set_num_threads(int n) { scipy_openblas_set_num_threads(n); }

std::string name() {
  return std::string("scipy-openblas32 ") + scipy_openblas_get_config() + " (kernel " + scipy_openblas_get_corename() +
         ")";
}

}  // namespace fastrnn::blas
