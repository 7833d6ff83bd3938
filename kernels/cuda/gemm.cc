// cuBLASLt plans and matmuls (see gemm.cuh).
#include "kernels/cuda/gemm.cuh"

#include <cublasLt.h>

#include <string>

namespace moegraph::cuda {
namespace {

std::string LtError(cublasStatus_t status) {
  return std::string("cuBLASLt error ") + std::to_string(static_cast<int>(status));
}

// Largest power of two (<= 256) dividing the address: the alignment cuBLASLt
// may assume for that operand.
int AlignmentOf(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  int alignment = 1;
  while (alignment < 256 && address % (2 * alignment) == 0)
    alignment *= 2;
  return alignment;
}

cudaDataType_t CudaType(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    default:
      return CUDA_R_32F;
  }
}

}  // namespace

struct CublasLtGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;

  ~Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(void* workspace,
                                                             size_t workspace_bytes) {
  cublasLtHandle_t handle = nullptr;
  const cublasStatus_t status = cublasLtCreate(&handle);
  if (status != CUBLAS_STATUS_SUCCESS) return Internal("cublasLtCreate: " + LtError(status));
  return std::unique_ptr<CublasLtGemm>(new CublasLtGemm(handle, workspace, workspace_bytes));
}

CublasLtGemm::CublasLtGemm(void* handle, void* workspace, size_t workspace_bytes)
    : handle_(handle), workspace_(workspace), workspace_bytes_(workspace_bytes) {}

CublasLtGemm::~CublasLtGemm() {
  plans_.clear();
  if (handle_) cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_));
}

// Row-major d[m, n] = x[m, k] w[n, k]^T is, column-major, d^T[n, m] =
// op(A)[n, k] B[k, m] with A = w seen as [k, n] (ld k) transposed and
// B = x seen as [k, m] (ld k): the "TN" layout cuBLASLt prefers.
StatusOr<CublasLtGemm::Plan*> CublasLtGemm::GetPlan(const Key& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second.get();
  const auto [dtype_int, m, n, k, align_w, align_x, align_d] = key;
  const cudaDataType_t in_type = CudaType(static_cast<DType>(dtype_int));
  auto plan = std::make_unique<Plan>();
  auto check = [](cublasStatus_t s, const char* what) -> Status {
    if (s == CUBLAS_STATUS_SUCCESS) return Status::Ok();
    return Internal(std::string(what) + ": " + LtError(s));
  };
  MG_RETURN_IF_ERROR(
      check(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc"));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  MG_RETURN_IF_ERROR(check(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                          &trans_a, sizeof(trans_a)),
                           "transa"));
  MG_RETURN_IF_ERROR(check(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                          &trans_b, sizeof(trans_b)),
                           "transb"));
  MG_RETURN_IF_ERROR(check(cublasLtMatrixLayoutCreate(&plan->a, in_type, k, n, k), "layout w"));
  MG_RETURN_IF_ERROR(check(cublasLtMatrixLayoutCreate(&plan->b, in_type, k, m, k), "layout x"));
  MG_RETURN_IF_ERROR(check(cublasLtMatrixLayoutCreate(&plan->d, CUDA_R_32F, n, m, n), "layout d"));

  cublasLtMatmulPreference_t preference = nullptr;
  MG_RETURN_IF_ERROR(check(cublasLtMatmulPreferenceCreate(&preference), "preference"));
  const uint64_t workspace_bytes = workspace_bytes_;
  const uint32_t aligns[4] = {static_cast<uint32_t>(align_w), static_cast<uint32_t>(align_x),
                              static_cast<uint32_t>(align_d), static_cast<uint32_t>(align_d)};
  cublasStatus_t s =
      cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                           &workspace_bytes, sizeof(workspace_bytes));
  const cublasLtMatmulPreferenceAttributes_t align_attrs[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4 && s == CUBLAS_STATUS_SUCCESS; ++i) {
    s = cublasLtMatmulPreferenceSetAttribute(preference, align_attrs[i], &aligns[i],
                                             sizeof(aligns[i]));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int num_results = 0;
  if (s == CUBLAS_STATUS_SUCCESS) {
    s = cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(handle_), plan->desc, plan->a,
                                       plan->b, plan->d, plan->d, preference, 1, &result,
                                       &num_results);
  }
  cublasLtMatmulPreferenceDestroy(preference);
  // No algorithm is a cached answer, not an error: the caller falls back.
  plan->found =
      s == CUBLAS_STATUS_SUCCESS && num_results > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (plan->found) plan->algo = result.algo;
  Plan* raw = plan.get();
  plans_.emplace(key, std::move(plan));
  return raw;
}

Status CublasLtGemm::Matmul(const void* w, const void* x, float* d, int64_t m, int64_t n, int64_t k,
                            DType dtype, cudaStream_t stream) {
  if (m <= 0 || n <= 0) return Status::Ok();
  if (k <= 0) return InvalidArgument("cuBLASLt matmul with k = " + std::to_string(k));
  if (dtype != DType::kF32 && dtype != DType::kBF16 && dtype != DType::kF16) {
    return Unimplemented(std::string("cuBLASLt matmul of ") + DTypeName(dtype));
  }
  const Key key{static_cast<int>(dtype), m, n, k, AlignmentOf(w), AlignmentOf(x), AlignmentOf(d)};
  MG_ASSIGN_OR_RETURN(Plan * plan, GetPlan(key));
  if (!plan->found) {
    return Unimplemented("cuBLASLt has no algorithm for " + std::to_string(m) + "x" +
                         std::to_string(n) + "x" + std::to_string(k) + " " + DTypeName(dtype));
  }
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t s = cublasLtMatmul(
      static_cast<cublasLtHandle_t>(handle_), plan->desc, &alpha, w, plan->a, x, plan->b, &beta, d,
      plan->d, d, plan->d, &plan->algo, workspace_, workspace_bytes_, stream);
  if (s != CUBLAS_STATUS_SUCCESS) return Internal("cublasLtMatmul: " + LtError(s));
  return Status::Ok();
}

}  // namespace moegraph::cuda
