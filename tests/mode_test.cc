// The MoDE layer: the gate, the merge against the five experts run as separate branches, and the merge's
// gradient against finite differences of an independent double-precision merge.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

extern "C" {
#include "model/mode_layer.h"
}
#include "test_util.h"

namespace {

using rmtest::DTensor;
using rmtest::Tensor;

// A model whose first unit is a MoDE layer 3 → 4 (ci = 3 input channels, co = base = 4), three tasks.
struct SmallModel {
    std::vector<rm_task> tasks{rm_task_make("a", RM_TASK_REGRESSION), rm_task_make("b", RM_TASK_REGRESSION),
                               rm_task_make("c", RM_TASK_BINARY)};
    rmtest::Ctx ctx{2};
    rm_model *model = nullptr;

    // added_kernel > 0: with an added expert of that kernel, used by tasks b and c (from task 1 on).
    explicit SmallModel(int added_kernel = 0)
    {
        rm_config cfg = rm_config_lite(tasks.data(), 3);
        cfg.base_channels = 4;
        cfg.levels = 1;
        cfg.in_channels = 3;
        cfg.added_expert_kernel = added_kernel;
        cfg.added_expert_task = 1;
        cfg.patch[0] = cfg.patch[1] = cfg.patch[2] = 8;
        EXPECT_EQ(rm_model_create(ctx, &cfg, 42, &model), RM_OK) << rm_ctx_error(ctx);
        // Gate logits of the default init are small: spread them so the experts' weights differ clearly.
        rm_unit *u = unit();
        for (int64_t j = 0; j < u->gate_w->numel; j++)
            u->gate_w->data[j] *= 8.0f;
    }
    ~SmallModel() { rm_model_free(model); }
    rm_unit *unit() { return &model->units[0]; }
};

// The gate by its definition, over the first `experts` experts (the rest get 0); with noise[row] added to each
// logit when given.
std::vector<double> softmax_gate(const rm_unit *u, int task, int n_tasks, const std::vector<double> *noise = nullptr,
                                 int experts = RM_N_EXPERTS)
{
    const int rows = u->expert[RM_EXPERT_ADDED] ? RM_MAX_EXPERTS : RM_N_EXPERTS; // the gate's, whatever the task uses
    std::vector<double> g(rows * u->co, 0.0);
    for (int64_t o = 0; o < u->co; o++) {
        double sum = 0.0;
        for (int e = 0; e < experts; e++) {
            const int64_t row = e * u->co + o;
            const double shift = noise ? (*noise)[row] : 0.0;
            g[row] = std::exp((double)u->gate_w->data[row * n_tasks + task] + u->gate_b->data[row] + shift);
            sum += g[row];
        }
        for (int e = 0; e < experts; e++)
            g[e * u->co + o] /= sum;
    }
    return g;
}

TEST(ModeGate, SumsToOneAndEqualsSoftmaxOfTheTaskColumnPlusBias)
{
    SmallModel m;
    const rm_unit *u = m.unit();
    for (int t = 0; t < 3; t++) {
        std::vector<float> g(RM_N_EXPERTS * u->co);
        rm_mode_gate(u, t, 3, g.data());
        const std::vector<double> want = softmax_gate(u, t, 3);
        EXPECT_LT(rmtest::max_rel_error(g, want), 1e-6);
        for (int64_t o = 0; o < u->co; o++) {
            double sum = 0.0;
            for (int e = 0; e < RM_N_EXPERTS; e++)
                sum += g[e * u->co + o];
            EXPECT_NEAR(sum, 1.0, 1e-6);
        }
    }
}

// Monte Carlo passes: every logit moves by σ·ε, ε a standard normal of (key, row) alone.
TEST(ModeGate, NoisyGateIsTheSoftmaxOfLogitsPlusScaledStandardNormals)
{
    SmallModel m;
    const rm_unit *u = m.unit();
    const double sigma = 0.7;
    std::vector<double> noise(RM_N_EXPERTS * u->co);
    for (size_t row = 0; row < noise.size(); row++)
        noise[row] = sigma * rm_mode_gate_normal(99, row);
    std::vector<float> g(RM_N_EXPERTS * u->co), plain(g.size());
    rm_mode_gate_noisy(u, 1, 3, sigma, 99, g.data());
    EXPECT_LT(rmtest::max_rel_error(g, softmax_gate(u, 1, 3, &noise)), 1e-6);
    rm_mode_gate_noisy(u, 1, 3, 0.0, 99, g.data());
    rm_mode_gate(u, 1, 3, plain.data());
    EXPECT_TRUE(rmtest::bit_identical(g, plain));
    // ε is standard normal: mean 0, variance 1, 5% beyond ±1.96, within four standard errors; and keys differ.
    const int n = 200000;
    double sum = 0, sq = 0, tails = 0, same = 0;
    for (int i = 0; i < n; i++) {
        const double e = rm_mode_gate_normal(7, (uint64_t)i);
        sum += e, sq += e * e, tails += std::fabs(e) > 1.959964;
        same += e == rm_mode_gate_normal(8, (uint64_t)i);
    }
    EXPECT_NEAR(sum / n, 0.0, 4.0 / std::sqrt(n));
    EXPECT_NEAR(sq / n, 1.0, 4.0 * std::sqrt(2.0 / n));
    EXPECT_NEAR(tails / n, 0.05, 4.0 * std::sqrt(0.05 * 0.95 / n));
    EXPECT_EQ(same, 0.0);
}

// The experts (five, and the added one when the unit has it) as separate branches on x, mixed per output channel by
// g: Σ_e g[e, o] · branch_e(x)[o].
DTensor branches(const rm_unit *u, const std::vector<double> &g, DTensor &x)
{
    const rmtest::Shape ys{x.view.ne[0], u->co, x.view.ne[2], x.view.ne[3], x.view.ne[4]};
    DTensor y(ys);
    const int kernel[RM_MAX_EXPERTS] = {5, 3, 1, 1, 1, u->added_k};
    for (int e = 0; e < RM_MAX_EXPERTS && u->expert[e]; e++) {
        const int k = kernel[e];
        Tensor wf({u->co, u->ci, k, k, k});
        wf.data.assign(u->expert[e]->data, u->expert[e]->data + u->expert[e]->numel);
        DTensor w(wf), branch(ys), pooled(ys);
        const rm_conv3d_params p = rm_conv3d_same(k);
        rm_ref_conv3d_forward(&p, x.p(), w.p(), nullptr, branch.p());
        if (e == RM_EXPERT_A3 || e == RM_EXPERT_A5) {
            rm_ref_avgpool3d_forward(e == RM_EXPERT_A3 ? 3 : 5, branch.p(), pooled.p());
            branch = pooled;
        }
        const int64_t v = ys[2] * ys[3] * ys[4];
        for (int64_t n = 0; n < ys[0]; n++)
            for (int64_t o = 0; o < u->co; o++)
                for (int64_t j = 0; j < v; j++)
                    y.data[(n * u->co + o) * v + j] += g[e * u->co + o] * branch.data[(n * u->co + o) * v + j];
    }
    return y;
}

TEST(ModeMerge, MergedKernelConvolutionEqualsTheFiveBranchesMixed)
{
    SmallModel m;
    const rm_unit *u = m.unit();
    Tensor x({2, u->ci, 7, 6, 5});
    rmtest::fill_uniform(x.data, 3);
    DTensor xd(x);
    for (int t = 0; t < 3; t++) {
        std::vector<float> g(RM_N_EXPERTS * u->co);
        rm_mode_gate(u, t, 3, g.data());
        Tensor w({u->co, u->ci, 5, 5, 5}, NAN), y({2, u->co, 7, 6, 5});
        rm_mode_merge(m.ctx, u, t, g.data(), w.data.data());
        const rm_conv3d_params p = rm_conv3d_same(5);
        ASSERT_EQ(rm_conv3d_forward(m.ctx, &p, x.p(), w.p(), nullptr, y.p()), RM_OK);
        const DTensor want = branches(u, softmax_gate(u, t, 3), xd);
        EXPECT_LT(rmtest::max_rel_error(y.data, want.data), 1e-5) << "task " << t;
    }
}

// The merge written out independently in double: pad every expert to 5³ and mix.
std::vector<double> merge_double(const std::vector<std::vector<double>> &experts, const std::vector<double> &gate_w,
                                 const std::vector<double> &gate_b, int64_t co, int64_t ci, int task, int n_tasks)
{
    std::vector<double> w((size_t)(co * ci * 125), 0.0);
    for (int64_t o = 0; o < co; o++) {
        double g[RM_N_EXPERTS], sum = 0.0;
        for (int e = 0; e < RM_N_EXPERTS; e++)
            sum += g[e] = std::exp(gate_w[(e * co + o) * n_tasks + task] + gate_b[e * co + o]);
        for (double &ge : g)
            ge /= sum;
        for (int64_t i = 0; i < ci; i++)
            for (int a = 0; a < 5; a++)
                for (int b = 0; b < 5; b++)
                    for (int c = 0; c < 5; c++) {
                        const bool inner = a >= 1 && a <= 3 && b >= 1 && b <= 3 && c >= 1 && c <= 3;
                        const bool centre = a == 2 && b == 2 && c == 2;
                        const int64_t oi = o * ci + i;
                        const int t3 = inner ? ((a - 1) * 3 + (b - 1)) * 3 + (c - 1) : 0;
                        double v = g[0] * experts[0][oi * 125 + (a * 5 + b) * 5 + c];
                        if (inner)
                            v += g[1] * experts[1][oi * 27 + t3] + g[3] * experts[3][oi] / 27.0;
                        if (centre)
                            v += g[2] * experts[2][oi];
                        v += g[4] * experts[4][oi] / 125.0;
                        w[oi * 125 + (a * 5 + b) * 5 + c] = v;
                    }
    }
    return w;
}

TEST(ModeMerge, GradientMatchesFiniteDifferencesOfAnIndependentMerge)
{
    SmallModel m;
    rm_unit *u = m.unit();
    const int task = 1, n_tasks = 3;
    const int64_t co = u->co, ci = u->ci;
    ASSERT_EQ(rm_model_ensure_grads(m.ctx, m.model), RM_OK);

    std::vector<std::vector<double>> experts;
    for (int e = 0; e < RM_N_EXPERTS; e++)
        experts.emplace_back(u->expert[e]->data, u->expert[e]->data + u->expert[e]->numel);
    std::vector<double> gw(u->gate_w->data, u->gate_w->data + u->gate_w->numel);
    std::vector<double> gb(u->gate_b->data, u->gate_b->data + u->gate_b->numel);

    // The fast merge agrees with the independent one.
    std::vector<float> g(RM_N_EXPERTS * co), w((size_t)(co * ci * 125));
    rm_mode_gate(u, task, n_tasks, g.data());
    rm_mode_merge(m.ctx, u, task, g.data(), w.data());
    EXPECT_LT(rmtest::max_rel_error(w, merge_double(experts, gw, gb, co, ci, task, n_tasks)), 1e-6);

    // L = Σ r · W_task: the analytic gradient from the fast backward, the numerical one from the double merge.
    std::vector<float> r(w.size());
    rmtest::fill_uniform(r, 9);
    const std::vector<double> rd = rmtest::to_double(r);
    for (size_t j = 0; j < rm_model_n_params(m.model); j++) {
        rm_param *p = rm_model_param(m.model, j);
        if (p->grad)
            std::fill(p->grad, p->grad + p->numel, 0.0f);
    }
    rm_mode_merge_backward(m.ctx, u, task, n_tasks, g.data(), r.data());
    auto loss = [&] { return rmtest::dot(merge_double(experts, gw, gb, co, ci, task, n_tasks), rd); };
    for (int e = 0; e < RM_N_EXPERTS; e++) {
        const std::vector<double> fd = rmtest::numeric_grad(experts[e], loss);
        EXPECT_LT(rmtest::max_rel_error(u->expert[e]->grad, fd.data(), fd.size()), 1e-5) << "expert " << e;
    }
    EXPECT_LT(rmtest::max_rel_error(u->gate_w->grad, rmtest::numeric_grad(gw, loss).data(), gw.size()), 1e-5);
    EXPECT_LT(rmtest::max_rel_error(u->gate_b->grad, rmtest::numeric_grad(gb, loss).data(), gb.size()), 1e-5);
    // The one-hot input reaches only column `task` of the gate's weight.
    for (int64_t row = 0; row < RM_N_EXPERTS * co; row++) {
        for (int t = 0; t < n_tasks; t++) {
            if (t != task) {
                ASSERT_EQ(u->gate_w->grad[row * n_tasks + t], 0.0f);
            }
        }
    }
}

// Task-incremental learning's added expert (docs/network.md §5.5): tasks from its own on mix six experts; the tasks
// before it mix the five exactly as a unit without it does, bit for bit.
TEST(ModeMerge, AddedExpertJoinsTheMixOnlyFromItsTaskOn)
{
    for (int k : {1, 3, 5}) {
        SmallModel m(k);
        rm_unit *u = m.unit();
        ASSERT_NE(u->expert[RM_EXPERT_ADDED], nullptr);
        Tensor x({2, u->ci, 7, 6, 5});
        rmtest::fill_uniform(x.data, 3);
        DTensor xd(x);
        for (int t = 0; t < 3; t++) {
            std::vector<float> g(RM_MAX_EXPERTS * u->co, NAN);
            rm_mode_gate(u, t, 3, g.data());
            const std::vector<double> want_g = softmax_gate(u, t, 3, nullptr, t >= 1 ? RM_MAX_EXPERTS : RM_N_EXPERTS);
            EXPECT_LT(rmtest::max_rel_error(g, want_g), 1e-6) << "kernel " << k << " task " << t;
            Tensor w({u->co, u->ci, 5, 5, 5}, NAN), y({2, u->co, 7, 6, 5});
            rm_mode_merge(m.ctx, u, t, g.data(), w.data.data());
            const rm_conv3d_params p = rm_conv3d_same(5);
            ASSERT_EQ(rm_conv3d_forward(m.ctx, &p, x.p(), w.p(), nullptr, y.p()), RM_OK);
            EXPECT_LT(rmtest::max_rel_error(y.data, branches(u, want_g, xd).data), 1e-5) << "kernel " << k;
            if (t == 0) {
                for (int64_t o = 0; o < u->co; o++)
                    EXPECT_EQ(g[RM_EXPERT_ADDED * u->co + o], 0.0f);
                // Without the added expert the same unit gives task 0 the same bits.
                rm_param *added = u->expert[RM_EXPERT_ADDED];
                u->expert[RM_EXPERT_ADDED] = nullptr;
                std::vector<float> g5(RM_N_EXPERTS * u->co);
                Tensor w5({u->co, u->ci, 5, 5, 5}, NAN);
                rm_mode_gate(u, t, 3, g5.data());
                rm_mode_merge(m.ctx, u, t, g5.data(), w5.data.data());
                u->expert[RM_EXPERT_ADDED] = added;
                EXPECT_TRUE(rmtest::bit_identical(w.data, w5.data));
                EXPECT_TRUE(rmtest::bit_identical(std::vector<float>(g.begin(), g.begin() + RM_N_EXPERTS * u->co), g5));
            }
        }
    }
}

// L = Σ r · W_task(added expert, gate): the merge's gradient into the added expert and the gate against central
// differences of the merged kernel, which the test above holds to the branches.
TEST(ModeMerge, AddedExpertGradientMatchesFiniteDifferences)
{
    SmallModel m(3);
    rm_unit *u = m.unit();
    const int task = 2, n_tasks = 3;
    const int64_t co = u->co, ci = u->ci;
    ASSERT_EQ(rm_model_ensure_grads(m.ctx, m.model), RM_OK);
    std::vector<float> r((size_t)(co * ci * 125));
    rmtest::fill_uniform(r, 9);
    auto loss = [&] {
        std::vector<double> g = softmax_gate(u, task, n_tasks, nullptr, RM_MAX_EXPERTS);
        std::vector<float> gf(g.begin(), g.end()), w(r.size());
        rm_mode_merge(m.ctx, u, task, gf.data(), w.data());
        double l = 0.0;
        for (size_t j = 0; j < w.size(); j++)
            l += (double)r[j] * w[j];
        return l;
    };
    std::vector<float> g(RM_MAX_EXPERTS * co);
    rm_mode_gate(u, task, n_tasks, g.data());
    rm_mode_merge_backward(m.ctx, u, task, n_tasks, g.data(), r.data());
    for (rm_param *p : {u->expert[RM_EXPERT_ADDED], u->gate_w, u->gate_b}) {
        double scale = 0.0;
        for (int64_t j = 0; j < p->numel; j++)
            scale = std::max(scale, (double)std::fabs(p->grad[j]));
        for (int64_t j = 0; j < p->numel; j++) {
            const float saved = p->data[j], h = 1e-2f;
            p->data[j] = saved + h;
            const double up = loss();
            p->data[j] = saved - h;
            const double down = loss();
            p->data[j] = saved;
            EXPECT_NEAR(p->grad[j], (up - down) / (2.0 * h), 2e-3 * scale + 1e-5) << p->name << "[" << j << "]";
        }
    }
    // A frozen tensor (no gradient buffer) is skipped: the merge's backward writes nothing for it.
    u->gate_b->grad = nullptr;
    u->expert[RM_EXPERT_K5]->grad = nullptr;
    rm_mode_merge_backward(m.ctx, u, task, n_tasks, g.data(), r.data());
}

} // namespace
