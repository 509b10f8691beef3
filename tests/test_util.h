// Shared test helpers: tensors with their storage, random fills, error measures, finite differences.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "ops/ref/ref.h"
#include "repmode/repmode.h"

namespace rmtest {

using Shape = std::array<int64_t, RM_MAX_DIMS>;

int64_t numel(const Shape &s);

// A float32 tensor that owns its storage; p() is the view the C API takes.
struct Tensor {
    std::vector<float> data;
    rm_tensor view{};

    explicit Tensor(const Shape &s, float value = 0.0f);
    rm_tensor *p();
    Shape shape() const;
};

// The double-precision counterpart, for the reference operators.
struct DTensor {
    std::vector<double> data;
    rm_dtensor view{};

    explicit DTensor(const Shape &s, double value = 0.0);
    explicit DTensor(const Tensor &t); // converts, same shape
    rm_dtensor *p();
};

// Deterministic uniform values in [lo, hi).
void fill_uniform(std::vector<float> &v, uint32_t seed, float lo = -1.0f, float hi = 1.0f);
void fill_uniform(std::vector<double> &v, uint32_t seed, double lo = -1.0, double hi = 1.0);
std::vector<double> to_double(const std::vector<float> &v);

// max|a - b| / max|b|: the relative error in the max norm, robust to elements near zero.
double max_rel_error(const float *a, const double *b, size_t n);
double max_rel_error(const double *a, const double *b, size_t n);
double max_rel_error(const std::vector<float> &a, const std::vector<double> &b);
double max_rel_error(const std::vector<double> &a, const std::vector<double> &b);

double dot(const std::vector<double> &a, const std::vector<double> &b);

// Central differences (f(v + h) - f(v - h)) / 2h for every element of v, perturbed in place and restored;
// h is relative to max(1, |v_i|). loss() reads v.
std::vector<double> numeric_grad(std::vector<double> &v, const std::function<double()> &loss, double h = 1e-6);

// The deploy form's prediction of `task` on x.
std::vector<float> deploy_predict(rm_ctx *ctx, const rm_model *m, int task, Tensor &x);

// Σ r · y of a training forward of m on x (dropout seed 3): a scalar whose gradient with respect to y is r, so a
// backward of dy = r gives its gradients, to compare with finite differences of it. x is (2, 1, 8, 8, 8).
double train_forward_dot(rm_ctx *ctx, rm_model *m, Tensor &x, const int *tasks, const std::vector<float> &r);

// d loss / d p->data[j] by central differences with Richardson extrapolation (steps h and h/2, h = 5e-2·max(1, |θ|)),
// restoring the element; for single-precision networks, whose loss carries rounding noise near 1e-5 that a step of
// 1e-2 turned into errors at the tolerance (with OpenBLAS's AVX-512 kernels, beyond it).
double richardson_derivative(float *theta, const std::function<double()> &loss);

// Expects p->grad at the elements first, first + stride, … to be richardson_derivative of loss() there, within
// 2e-3 of the gradient's largest magnitude plus 1e-4. p->grad must be set; failures name p.
void expect_gradient_matches(rm_param *p, int64_t first, int64_t stride, const std::function<double()> &loss);

// A context that frees itself.
class Ctx {
  public:
    explicit Ctx(int threads = 0);
    ~Ctx();
    Ctx(const Ctx &) = delete;
    Ctx &operator=(const Ctx &) = delete;
    operator rm_ctx *() const { return ctx_; }

  private:
    rm_ctx *ctx_;
};

// Bit-for-bit equality of two float buffers.
bool bit_identical(const std::vector<float> &a, const std::vector<float> &b);

} // namespace rmtest
