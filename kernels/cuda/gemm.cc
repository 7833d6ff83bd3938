// cuBLASLt plans and matmuls (see gemm.cuh).
#include "kernels/cuda/gemm.cuh"

#include <cublasLt.h>
#include <dlfcn.h>

#include <string>
#include <type_traits>

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

// cuBLASLt is loaded with dlopen when the first GEMM context is created, not
// linked: merely linking libcublasLt costs every process ~200 MiB of resident
// memory at start-up, CPU-only runs included.
struct LtApi {
#define MOEGRAPH_LT_FN(name) decltype(&cublasLt##name) name = nullptr;
  MOEGRAPH_LT_FN(Create)
  MOEGRAPH_LT_FN(Destroy)
  MOEGRAPH_LT_FN(Matmul)
  MOEGRAPH_LT_FN(MatmulAlgoGetHeuristic)
  MOEGRAPH_LT_FN(MatmulDescCreate)
  MOEGRAPH_LT_FN(MatmulDescDestroy)
  MOEGRAPH_LT_FN(MatmulDescSetAttribute)
  MOEGRAPH_LT_FN(MatmulPreferenceCreate)
  MOEGRAPH_LT_FN(MatmulPreferenceDestroy)
  MOEGRAPH_LT_FN(MatmulPreferenceSetAttribute)
  MOEGRAPH_LT_FN(MatrixLayoutCreate)
  MOEGRAPH_LT_FN(MatrixLayoutDestroy)
#undef MOEGRAPH_LT_FN
};

StatusOr<LtApi> LoadLt() {
  const std::string versioned = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
  void* lib = dlopen(versioned.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = dlopen("libcublasLt.so", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    return FailedPrecondition("cannot load " + versioned +
                              " (the CUDA backend's GEMMs): " + dlerror());
  }
  LtApi api;
  bool missing = false;
  std::string missing_name;
  auto bind = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
    if (!fn && !missing) {
      missing = true;
      missing_name = name;
    }
  };
#define MOEGRAPH_LT_BIND(name) bind(api.name, "cublasLt" #name);
  MOEGRAPH_LT_BIND(Create)
  MOEGRAPH_LT_BIND(Destroy)
  MOEGRAPH_LT_BIND(Matmul)
  MOEGRAPH_LT_BIND(MatmulAlgoGetHeuristic)
  MOEGRAPH_LT_BIND(MatmulDescCreate)
  MOEGRAPH_LT_BIND(MatmulDescDestroy)
  MOEGRAPH_LT_BIND(MatmulDescSetAttribute)
  MOEGRAPH_LT_BIND(MatmulPreferenceCreate)
  MOEGRAPH_LT_BIND(MatmulPreferenceDestroy)
  MOEGRAPH_LT_BIND(MatmulPreferenceSetAttribute)
  MOEGRAPH_LT_BIND(MatrixLayoutCreate)
  MOEGRAPH_LT_BIND(MatrixLayoutDestroy)
#undef MOEGRAPH_LT_BIND
  if (missing) return FailedPrecondition(versioned + " has no symbol " + missing_name);
  return api;
}

// The loaded API (loaded once, thread-safely; never unloaded).
const StatusOr<LtApi>& LtOrError() {
  static const StatusOr<LtApi> api = LoadLt();
  return api;
}

// Only called once a CublasLtGemm exists, which requires a loaded API.
const LtApi& Lt() {
  return LtOrError().value();
}

}  // namespace

struct CublasLtGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;

  ~Plan() {
    if (a) Lt().MatrixLayoutDestroy(a);
    if (b) Lt().MatrixLayoutDestroy(b);
    if (d) Lt().MatrixLayoutDestroy(d);
    if (desc) Lt().MatmulDescDestroy(desc);
  }
};

StatusOr<std::unique_ptr<CublasLtGemm>> CublasLtGemm::Create(void* workspace,
                                                             size_t workspace_bytes) {
  if (!LtOrError().ok()) return LtOrError().status();
  cublasLtHandle_t handle = nullptr;
  const cublasStatus_t status = Lt().Create(&handle);
  if (status != CUBLAS_STATUS_SUCCESS) return Internal("cublasLtCreate: " + LtError(status));
  return std::unique_ptr<CublasLtGemm>(new CublasLtGemm(handle, workspace, workspace_bytes));
}

CublasLtGemm::CublasLtGemm(void* handle, void* workspace, size_t workspace_bytes)
    : handle_(handle), workspace_(workspace), workspace_bytes_(workspace_bytes) {}

CublasLtGemm::~CublasLtGemm() {
  plans_.clear();
  if (handle_) Lt().Destroy(static_cast<cublasLtHandle_t>(handle_));
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
      check(Lt().MatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc"));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  MG_RETURN_IF_ERROR(check(Lt().MatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                       &trans_a, sizeof(trans_a)),
                           "transa"));
  MG_RETURN_IF_ERROR(check(Lt().MatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                       &trans_b, sizeof(trans_b)),
                           "transb"));
  MG_RETURN_IF_ERROR(check(Lt().MatrixLayoutCreate(&plan->a, in_type, k, n, k), "layout w"));
  MG_RETURN_IF_ERROR(check(Lt().MatrixLayoutCreate(&plan->b, in_type, k, m, k), "layout x"));
  MG_RETURN_IF_ERROR(check(Lt().MatrixLayoutCreate(&plan->d, CUDA_R_32F, n, m, n), "layout d"));

  cublasLtMatmulPreference_t preference = nullptr;
  MG_RETURN_IF_ERROR(check(Lt().MatmulPreferenceCreate(&preference), "preference"));
  const uint64_t workspace_bytes = workspace_bytes_;
  const uint32_t aligns[4] = {static_cast<uint32_t>(align_w), static_cast<uint32_t>(align_x),
                              static_cast<uint32_t>(align_d), static_cast<uint32_t>(align_d)};
  cublasStatus_t s =
      Lt().MatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                        &workspace_bytes, sizeof(workspace_bytes));
  const cublasLtMatmulPreferenceAttributes_t align_attrs[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4 && s == CUBLAS_STATUS_SUCCESS; ++i) {
    s = Lt().MatmulPreferenceSetAttribute(preference, align_attrs[i], &aligns[i],
                                          sizeof(aligns[i]));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int num_results = 0;
  if (s == CUBLAS_STATUS_SUCCESS) {
    s = Lt().MatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(handle_), plan->desc, plan->a,
                                    plan->b, plan->d, plan->d, preference, 1, &result,
                                    &num_results);
  }
  Lt().MatmulPreferenceDestroy(preference);
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
  const cublasStatus_t s = Lt().Matmul(static_cast<cublasLtHandle_t>(handle_), plan->desc, &alpha,
                                       w, plan->a, x, plan->b, &beta, d, plan->d, d, plan->d,
                                       &plan->algo, workspace_, workspace_bytes_, stream);
  if (s != CUBLAS_STATUS_SUCCESS) return Internal("cublasLtMatmul: " + LtError(s));
  return Status::Ok();
}

}  // namespace moegraph::cuda
