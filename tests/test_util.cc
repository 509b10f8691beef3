#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>

namespace rmtest {

int64_t numel(const Shape &s)
{
    int64_t n = 1;
    for (int64_t d : s)
        n *= d;
    return n;
}

Tensor::Tensor(const Shape &s, float value) : data(static_cast<size_t>(numel(s)), value)
{
    view.data = data.data();
    for (int i = 0; i < RM_MAX_DIMS; i++)
        view.ne[i] = s[i];
}

rm_tensor *Tensor::p()
{
    view.data = data.data();
    return &view;
}

Shape Tensor::shape() const { return {view.ne[0], view.ne[1], view.ne[2], view.ne[3], view.ne[4]}; }

DTensor::DTensor(const Shape &s, double value) : data(static_cast<size_t>(numel(s)), value)
{
    view.data = data.data();
    for (int i = 0; i < RM_MAX_DIMS; i++)
        view.ne[i] = s[i];
}

DTensor::DTensor(const Tensor &t) : DTensor(t.shape())
{
    std::copy(t.data.begin(), t.data.end(), data.begin());
}

rm_dtensor *DTensor::p()
{
    view.data = data.data();
    return &view;
}

void fill_uniform(std::vector<float> &v, uint32_t seed, float lo, float hi)
{
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    for (float &x : v)
        x = dist(gen);
}

void fill_uniform(std::vector<double> &v, uint32_t seed, double lo, double hi)
{
    std::mt19937 gen(seed);
    std::uniform_real_distribution<double> dist(lo, hi);
    for (double &x : v)
        x = dist(gen);
}

std::vector<double> to_double(const std::vector<float> &v) { return std::vector<double>(v.begin(), v.end()); }

template <typename T>
static double max_rel_error_impl(const T *a, const double *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double ai = static_cast<double>(a[i]);
        if (std::isnan(ai) || std::isnan(b[i]))
            return INFINITY;
        num = std::max(num, std::fabs(ai - b[i]));
        den = std::max(den, std::fabs(b[i]));
    }
    if (den == 0.0)
        return num;
    return num / den;
}

double max_rel_error(const float *a, const double *b, size_t n) { return max_rel_error_impl(a, b, n); }
double max_rel_error(const double *a, const double *b, size_t n) { return max_rel_error_impl(a, b, n); }

double max_rel_error(const std::vector<float> &a, const std::vector<double> &b)
{
    if (a.size() != b.size())
        throw std::invalid_argument("max_rel_error: sizes differ");
    return max_rel_error(a.data(), b.data(), a.size());
}

double max_rel_error(const std::vector<double> &a, const std::vector<double> &b)
{
    if (a.size() != b.size())
        throw std::invalid_argument("max_rel_error: sizes differ");
    return max_rel_error(a.data(), b.data(), a.size());
}

double dot(const std::vector<double> &a, const std::vector<double> &b)
{
    if (a.size() != b.size())
        throw std::invalid_argument("dot: sizes differ");
    double s = 0.0;
    for (size_t i = 0; i < a.size(); i++)
        s += a[i] * b[i];
    return s;
}

std::vector<double> numeric_grad(std::vector<double> &v, const std::function<double()> &loss, double h)
{
    std::vector<double> g(v.size());
    for (size_t i = 0; i < v.size(); i++) {
        const double saved = v[i];
        const double step = h * std::max(1.0, std::fabs(saved));
        v[i] = saved + step;
        const double up = loss();
        v[i] = saved - step;
        const double down = loss();
        v[i] = saved;
        g[i] = (up - down) / (2.0 * step);
    }
    return g;
}

Ctx::Ctx(int threads) : ctx_(rm_ctx_create(threads))
{
    if (!ctx_)
        throw std::bad_alloc();
}

Ctx::~Ctx() { rm_ctx_free(ctx_); }

bool bit_identical(const std::vector<float> &a, const std::vector<float> &b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<float> deploy_predict(rm_ctx *ctx, const rm_model *m, int task, Tensor &x)
{
    rm_deploy *d = nullptr;
    EXPECT_EQ(rm_deploy_create(ctx, m, task, &d), RM_OK) << rm_ctx_error(ctx);
    Tensor y(x.shape());
    EXPECT_EQ(rm_deploy_forward(ctx, d, x.p(), y.p()), RM_OK) << rm_ctx_error(ctx);
    rm_deploy_free(d);
    return y.data;
}

double train_forward_dot(rm_ctx *ctx, rm_model *m, Tensor &x, const int *tasks, const std::vector<float> &r)
{
    Tensor y({2, 1, 8, 8, 8});
    EXPECT_EQ(rm_model_forward_train(ctx, m, x.p(), tasks, 3, y.p()), RM_OK) << rm_ctx_error(ctx);
    double l = 0.0;
    for (size_t j = 0; j < r.size(); j++)
        l += (double)r[j] * y.data[j];
    return l;
}

double richardson_derivative(float *theta, const std::function<double()> &loss)
{
    const float saved = *theta;
    auto central = [&](float h) {
        *theta = saved + h;
        const double up = loss();
        *theta = saved - h;
        const double down = loss();
        *theta = saved;
        return (up - down) / (2.0 * (double)h);
    };
    const float h = 5e-2f * std::max(1.0f, std::fabs(saved));
    return (4.0 * central(h / 2) - central(h)) / 3.0;
}

void expect_gradient_matches(rm_param *p, int64_t first, int64_t stride, const std::function<double()> &loss)
{
    const std::vector<float> analytic(p->grad, p->grad + p->numel);
    double scale = 0.0;
    for (float g : analytic)
        scale = std::max(scale, (double)std::fabs(g));
    for (int64_t j = first; j < p->numel; j += stride)
        EXPECT_NEAR(analytic[(size_t)j], richardson_derivative(&p->data[j], loss), 2e-3 * scale + 1e-4)
            << p->name << "[" << j << "]";
}

} // namespace rmtest
