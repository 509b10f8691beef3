// Adam and AdamW against a scalar double-precision loop written from PyTorch's formulas, the weight-decay rule on
// a real model's names, learning-rate schedules against their closed form, bad arguments, thread independence and
// resuming from saved state.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

bool ends_with(const std::string &s, const std::string &suffix)
{
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A small RepMode network (FReLU, so activation biases exist) that has run one training forward: its gradient
// buffers exist, and the tests fill them as they like.
struct SmallNet {
    std::vector<rm_task> tasks{rm_task_make("dna", RM_TASK_REGRESSION), rm_task_make("ink", RM_TASK_BINARY)};
    rm_model *model = nullptr;

    SmallNet(rm_ctx *ctx, int64_t base = 2, int levels = 2, bool forward = true)
    {
        rm_config cfg = rm_config_lite(tasks.data(), 2);
        cfg.base_channels = base;
        cfg.levels = levels;
        cfg.activation = RM_ACT_FRELU;
        EXPECT_EQ(rm_model_create(ctx, &cfg, 7, &model), RM_OK) << rm_ctx_error(ctx);
        if (forward) {
            const int64_t s = int64_t(1) << levels;
            rmtest::Tensor x({2, 1, s, s, s}), y({2, 1, s, s, s});
            rmtest::fill_uniform(x.data, 1);
            const int task_of[2] = {0, 1};
            EXPECT_EQ(rm_model_forward_train(ctx, model, x.p(), task_of, 0, y.p()), RM_OK) << rm_ctx_error(ctx);
        }
    }
    ~SmallNet() { rm_model_free(model); }
    SmallNet(const SmallNet &) = delete;
    SmallNet &operator=(const SmallNet &) = delete;

    std::vector<rm_param *> trainable() const
    {
        std::vector<rm_param *> out;
        for (size_t i = 0; i < rm_model_n_params(model); i++)
            if (rm_model_param(model, i)->trainable)
                out.push_back(rm_model_param(model, i));
        return out;
    }
    // Every trainable value (or gradient), concatenated in rm_model_param order.
    std::vector<float> values() const
    {
        std::vector<float> v;
        for (rm_param *p : trainable())
            v.insert(v.end(), p->data, p->data + p->numel);
        return v;
    }
    void set_values(const std::vector<float> &v) const
    {
        size_t o = 0;
        for (rm_param *p : trainable()) {
            std::copy(v.begin() + (long)o, v.begin() + (long)(o + (size_t)p->numel), p->data);
            o += (size_t)p->numel;
        }
    }
    void set_grads(const std::vector<float> &g) const
    {
        size_t o = 0;
        for (rm_param *p : trainable()) {
            std::copy(g.begin() + (long)o, g.begin() + (long)(o + (size_t)p->numel), p->grad);
            o += (size_t)p->numel;
        }
    }
    // Whether each element's parameter decays, by the test's own reading of the rule: only convolution weights.
    std::vector<int> decay_mask() const
    {
        std::vector<int> d;
        for (rm_param *p : trainable()) {
            const std::string n = p->name;
            const bool conv = n.find(".expert_") != std::string::npos || ends_with(n, "conv_down.0.weight") ||
                              ends_with(n, "convt.0.weight");
            d.insert(d.end(), (size_t)p->numel, conv ? 1 : 0);
        }
        return d;
    }
};

std::vector<float> random_grads(size_t n, uint32_t seed)
{
    std::vector<float> g(n);
    rmtest::fill_uniform(g, seed, -1.0f, 1.0f);
    return g;
}

// The update of torch.optim.Adam / AdamW, written out per scalar in double.
struct RefAdam {
    rm_optim_config cfg;
    std::vector<double> m, v;
    int64_t t = 0;

    RefAdam(const rm_optim_config &c, size_t n) : cfg(c), m(n, 0.0), v(n, 0.0) {}

    void step(std::vector<double> &theta, const std::vector<float> &grad, const std::vector<int> &decay, double lr)
    {
        t++;
        const double b1 = cfg.beta1, b2 = cfg.beta2, eps = cfg.eps, wd = cfg.weight_decay;
        for (size_t i = 0; i < theta.size(); i++) {
            double g = grad[i];
            if (decay[i] && wd > 0.0) {
                if (cfg.kind == RM_OPTIM_ADAMW)
                    theta[i] -= lr * wd * theta[i];
                else
                    g += wd * theta[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            const double mhat = m[i] / (1.0 - std::pow(b1, (double)t));
            const double vhat = v[i] / (1.0 - std::pow(b2, (double)t));
            theta[i] -= lr * mhat / (std::sqrt(vhat) + eps);
        }
    }
};

// Runs `steps` updates of the library and of the reference from the same start and gradients; compares the
// parameters, their displacement and both moments after every step.
void expect_matches_reference(const rm_optim_config &cfg, int steps, const std::vector<float> &lrs)
{
    rmtest::Ctx ctx(2);
    SmallNet net(ctx);
    rm_optim *opt = nullptr;
    ASSERT_EQ(rm_optim_create(ctx, net.model, &cfg, &opt), RM_OK) << rm_ctx_error(ctx);
    const std::vector<float> start = net.values();
    std::vector<double> theta = rmtest::to_double(start);
    const std::vector<int> decay = net.decay_mask();
    RefAdam ref(cfg, start.size());
    for (int s = 0; s < steps; s++) {
        const std::vector<float> g = random_grads(start.size(), 40 + (uint32_t)s);
        net.set_grads(g);
        const float lr = lrs[(size_t)s % lrs.size()];
        ASSERT_EQ(rm_optim_step(ctx, opt, lr), RM_OK) << rm_ctx_error(ctx);
        ref.step(theta, g, decay, lr);
        EXPECT_EQ(rm_optim_step_count(opt), s + 1);

        const std::vector<float> got = net.values();
        EXPECT_LT(rmtest::max_rel_error(got, theta), 1e-6) << "step " << s + 1;
        std::vector<double> moved(got.size()), ref_moved(got.size());
        for (size_t i = 0; i < got.size(); i++) {
            moved[i] = (double)got[i] - (double)start[i];
            ref_moved[i] = theta[i] - (double)start[i];
        }
        EXPECT_LT(rmtest::max_rel_error(moved, ref_moved), 2e-4) << "step " << s + 1;
        size_t n = 0;
        const float *m = rm_optim_moments(opt, RM_OPTIM_EXP_AVG, &n);
        ASSERT_EQ(n, start.size());
        const float *v = rm_optim_moments(opt, RM_OPTIM_EXP_AVG_SQ, &n);
        ASSERT_EQ(n, start.size());
        EXPECT_LT(rmtest::max_rel_error(m, ref.m.data(), n), 1e-6) << "step " << s + 1;
        EXPECT_LT(rmtest::max_rel_error(v, ref.v.data(), n), 1e-6) << "step " << s + 1;
    }
    rm_optim_free(opt);
}

rm_optim_config adam(float lr, float wd)
{
    rm_optim_config c = rm_optim_adam_official();
    c.lr = lr;
    c.weight_decay = wd;
    return c;
}

rm_optim_config adamw(float lr, float wd)
{
    rm_optim_config c = rm_optim_adamw_default();
    c.lr = lr;
    c.weight_decay = wd;
    return c;
}

} // namespace

// ---- configurations ---------------------------------------------------------------------------------------------

TEST(Optim, PresetsAreTheOfficialAdamAndPyTorchsAdamW)
{
    const rm_optim_config a = rm_optim_adam_official();
    EXPECT_EQ(a.kind, RM_OPTIM_ADAM);
    EXPECT_EQ(a.lr, 1e-4f);
    EXPECT_EQ(a.beta1, 0.9f);
    EXPECT_EQ(a.beta2, 0.999f);
    EXPECT_EQ(a.eps, 1e-8f);
    EXPECT_EQ(a.weight_decay, 0.0f);
    const rm_optim_config w = rm_optim_adamw_default();
    EXPECT_EQ(w.kind, RM_OPTIM_ADAMW);
    EXPECT_EQ(w.lr, 1e-3f);
    EXPECT_EQ(w.beta1, 0.9f);
    EXPECT_EQ(w.beta2, 0.999f);
    EXPECT_EQ(w.eps, 1e-8f);
    EXPECT_EQ(w.weight_decay, 0.01f);
    rmtest::Ctx ctx(1);
    EXPECT_EQ(rm_optim_config_validate(ctx, &a), RM_OK);
    EXPECT_EQ(rm_optim_config_validate(ctx, &w), RM_OK);
}

// ---- Adam and AdamW against the reference -----------------------------------------------------------------------

TEST(Adam, StepsMatchTheScalarReferenceWithoutWeightDecay)
{
    expect_matches_reference(adam(1e-2f, 0.0f), 4, {1e-2f});
}

TEST(Adam, StepsMatchTheScalarReferenceWithL2WeightDecay)
{
    expect_matches_reference(adam(1e-2f, 0.1f), 3, {1e-2f, 5e-3f, 2e-2f});
}

TEST(AdamW, StepsMatchTheScalarReferenceWithDecoupledWeightDecay)
{
    expect_matches_reference(adamw(1e-2f, 0.05f), 3, {1e-2f, 5e-3f, 2e-2f});
}

TEST(AdamW, StepsMatchTheScalarReferenceWithoutWeightDecay)
{
    expect_matches_reference(adamw(1e-2f, 0.0f), 3, {1e-2f});
}

TEST(Adam, OtherBetasAndEpsMatchTheScalarReference)
{
    rm_optim_config c = adam(3e-3f, 0.0f);
    c.beta1 = 0.5f;
    c.beta2 = 0.75f;
    c.eps = 1e-3f;
    expect_matches_reference(c, 3, {3e-3f});
}

// With a constant gradient the bias corrections undo the moments' start at zero exactly: m̂ = g and √v̂ = |g| at
// every step, so step t has moved θ by −t·lr·g/(|g| + ε).
TEST(Adam, BiasCorrectionMakesEachOfTheFirstStepsMoveByLrTimesTheGradientsSign)
{
    rmtest::Ctx ctx(2);
    SmallNet net(ctx);
    const rm_optim_config cfg = adam(1e-2f, 0.0f);
    rm_optim *opt = nullptr;
    ASSERT_EQ(rm_optim_create(ctx, net.model, &cfg, &opt), RM_OK) << rm_ctx_error(ctx);
    const std::vector<float> start = net.values();
    const std::vector<float> g = random_grads(start.size(), 9);
    net.set_grads(g);
    for (int t = 1; t <= 3; t++) {
        ASSERT_EQ(rm_optim_step(ctx, opt, cfg.lr), RM_OK) << rm_ctx_error(ctx);
        const std::vector<float> got = net.values();
        double worst = 0.0;
        for (size_t i = 0; i < got.size(); i++) {
            const double gi = g[i];
            const double want = start[i] - t * (double)cfg.lr * gi / (std::fabs(gi) + (double)cfg.eps);
            // a few roundings of θ per step, and float factors good to ~1e-6 of the step
            const double tol = 4.0 * t * std::ldexp(1.0, -24) * std::fabs(want) + 1e-5 * cfg.lr;
            worst = std::max(worst, std::fabs(got[i] - want) / tol);
        }
        EXPECT_LE(worst, 1.0) << "step " << t;
    }
    rm_optim_free(opt);
}

// ---- which parameters decay ---------------------------------------------------------------------------------------

TEST(Optim, OnlyConvolutionWeightsOfARealModelDecay)
{
    rmtest::Ctx ctx(1);
    SmallNet net(ctx, 2, 2, false);
    int seen_bn_mode = 0, seen_bn_down = 0, seen_bn_up = 0, seen_gate_w = 0, seen_gate_b = 0, seen_act = 0,
        seen_expert = 0, seen_down = 0, seen_up = 0;
    for (rm_param *p : net.trainable()) {
        const std::string n = p->name;
        const bool conv = n.find(".expert_") != std::string::npos || ends_with(n, "conv_down.0.weight") ||
                          ends_with(n, "convt.0.weight");
        EXPECT_EQ(rm_optim_decays(p->name), conv ? 1 : 0) << n;
        seen_bn_mode += n.find("subsequent_layer.0.") != std::string::npos;
        seen_bn_down += ends_with(n, "conv_down.1.weight") || ends_with(n, "conv_down.1.bias");
        seen_bn_up += ends_with(n, "convt.1.weight") || ends_with(n, "convt.1.bias");
        seen_gate_w += ends_with(n, "gate.weight");
        seen_gate_b += ends_with(n, "gate.bias");
        seen_act += ends_with(n, "activation.bias");
        seen_expert += n.find(".expert_") != std::string::npos;
        seen_down += ends_with(n, "conv_down.0.weight");
        seen_up += ends_with(n, "convt.0.weight");
    }
    for (int seen : {seen_bn_mode, seen_bn_down, seen_bn_up, seen_gate_w, seen_gate_b, seen_act, seen_expert,
                     seen_down, seen_up})
        EXPECT_GT(seen, 0);
    // Names spelled out, and the rule's edges: whole components only.
    EXPECT_EQ(rm_optim_decays("encoder_block1.conv_more.conv1.expert_conv5x5_conv"), 1);
    EXPECT_EQ(rm_optim_decays("decoder_block2.convt.0.weight"), 1);
    EXPECT_EQ(rm_optim_decays("encoder_block1.conv_down.1.weight"), 0);
    EXPECT_EQ(rm_optim_decays("decoder_block1.convt.1.bias"), 0);
    EXPECT_EQ(rm_optim_decays("bottle_block.conv2.subsequent_layer.0.weight"), 0);
    EXPECT_EQ(rm_optim_decays("conv_out.gate.weight"), 0);
    EXPECT_EQ(rm_optim_decays("conv_out.gate.bias"), 0);
    EXPECT_EQ(rm_optim_decays("bottle_block.conv1.activation.bias"), 0);
    EXPECT_EQ(rm_optim_decays("encoder_block1.conv_down.10.weight"), 1);
    EXPECT_EQ(rm_optim_decays("x.subsequent_layer.01.weight"), 1);
    EXPECT_EQ(rm_optim_decays("x.gates.weight"), 1);
    EXPECT_EQ(rm_optim_decays("bias"), 0);
    EXPECT_EQ(rm_optim_decays("weight"), 1);
    EXPECT_EQ(rm_optim_decays(nullptr), 0);
}

// With zero gradients the Adam step moves nothing, so AdamW's decay shows alone: decaying parameters shrink by
// (1 − lr·wd), every other one keeps its bits.
TEST(AdamW, ZeroGradientsShrinkOnlyTheDecayingParameters)
{
    rmtest::Ctx ctx(2);
    SmallNet net(ctx);
    const rm_optim_config cfg = adamw(0.05f, 0.2f);
    rm_optim *opt = nullptr;
    ASSERT_EQ(rm_optim_create(ctx, net.model, &cfg, &opt), RM_OK) << rm_ctx_error(ctx);
    const std::vector<float> start = net.values();
    net.set_grads(std::vector<float>(start.size(), 0.0f));
    ASSERT_EQ(rm_optim_step(ctx, opt, cfg.lr), RM_OK) << rm_ctx_error(ctx);
    const std::vector<float> got = net.values();
    const std::vector<int> decay = net.decay_mask();
    const float shrink = (float)(1.0 - (double)cfg.lr * (double)cfg.weight_decay);
    size_t n_decayed = 0;
    for (size_t i = 0; i < got.size(); i++) {
        if (decay[i]) {
            n_decayed++;
            EXPECT_EQ(got[i], start[i] * shrink) << i;
        } else {
            EXPECT_EQ(std::memcmp(&got[i], &start[i], sizeof(float)), 0) << i;
        }
    }
    EXPECT_GT(n_decayed, 0u);
    EXPECT_LT(n_decayed, got.size());
    rm_optim_free(opt);
}

TEST(Adam, L2DecayLeavesNonDecayingParametersWithZeroGradientsUntouched)
{
    rmtest::Ctx ctx(2);
    SmallNet net(ctx);
    const rm_optim_config cfg = adam(0.05f, 0.2f);
    rm_optim *opt = nullptr;
    ASSERT_EQ(rm_optim_create(ctx, net.model, &cfg, &opt), RM_OK) << rm_ctx_error(ctx);
    const std::vector<float> start = net.values();
    net.set_grads(std::vector<float>(start.size(), 0.0f));
    ASSERT_EQ(rm_optim_step(ctx, opt, cfg.lr), RM_OK) << rm_ctx_error(ctx);
    const std::vector<float> got = net.values();
    const std::vector<int> decay = net.decay_mask();
    for (size_t i = 0; i < got.size(); i++) {
        if (decay[i]) { // g = wd·θ, and the first step moves θ by lr·g/(|g| + ε), about lr·sign(θ)
            const double g = (double)cfg.weight_decay * start[i];
            EXPECT_NEAR(got[i], start[i] - cfg.lr * g / (std::fabs(g) + (double)cfg.eps), 1e-6) << i;
        } else {
            EXPECT_EQ(std::memcmp(&got[i], &start[i], sizeof(float)), 0) << i;
        }
    }
    rm_optim_free(opt);
}

// ---- with the network's own gradients ----------------------------------------------------------------------------

TEST(Optim, AdamStepsOnBackpropagatedGradientsReduceTheLossOfAFixedBatch)
{
    rmtest::Ctx ctx(2);
    SmallNet net(ctx, 2, 1, false);
    rmtest::Tensor x({2, 1, 4, 4, 4}), y({2, 1, 4, 4, 4}), target({2, 1, 4, 4, 4}), dy({2, 1, 4, 4, 4});
    rmtest::fill_uniform(x.data, 3);
    rmtest::fill_uniform(target.data, 4, -0.5f, 0.5f);
    const int task_of[2] = {0, 1};
    const rm_optim_config cfg = adamw(1e-2f, 0.01f);
    rm_optim *opt = nullptr;
    ASSERT_EQ(rm_optim_create(ctx, net.model, &cfg, &opt), RM_OK) << rm_ctx_error(ctx);
    float first = 0.0f, last = 0.0f;
    for (int s = 0; s < 20; s++) {
        ASSERT_EQ(rm_model_forward_train(ctx, net.model, x.p(), task_of, 0, y.p()), RM_OK) << rm_ctx_error(ctx);
        float loss = 0.0f;
        ASSERT_EQ(rm_mse_forward(ctx, y.p(), target.p(), &loss), RM_OK);
        ASSERT_EQ(rm_mse_backward(ctx, y.p(), target.p(), 1.0f, dy.p()), RM_OK);
        ASSERT_EQ(rm_model_backward(ctx, net.model, dy.p()), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(rm_optim_step(ctx, opt, cfg.lr), RM_OK) << rm_ctx_error(ctx);
        if (s == 0)
            first = loss;
        last = loss;
    }
    EXPECT_LT(last, 0.5f * first);
    rm_optim_free(opt);
}

// ---- bad arguments ------------------------------------------------------------------------------------------------

TEST(Optim, BadConfigurationsAreRefusedWithAMessageNamingTheField)
{
    rmtest::Ctx ctx(1);
    SmallNet net(ctx, 2, 1, false);
    struct Case {
        rm_optim_config cfg;
        const char *field;
    };
    auto with = [](void (*edit)(rm_optim_config &)) {
        rm_optim_config c = rm_optim_adamw_default();
        edit(c);
        return c;
    };
    const Case cases[] = {
        {with([](rm_optim_config &c) { c.lr = -1e-3f; }), "lr"},
        {with([](rm_optim_config &c) { c.lr = NAN; }), "lr"},
        {with([](rm_optim_config &c) { c.beta1 = 1.0f; }), "beta1"},
        {with([](rm_optim_config &c) { c.beta1 = -0.1f; }), "beta1"},
        {with([](rm_optim_config &c) { c.beta2 = 1.5f; }), "beta2"},
        {with([](rm_optim_config &c) { c.eps = 0.0f; }), "eps"},
        {with([](rm_optim_config &c) { c.eps = -1e-8f; }), "eps"},
        {with([](rm_optim_config &c) { c.weight_decay = -0.01f; }), "weight_decay"},
        {with([](rm_optim_config &c) { c.kind = (rm_optim_kind)7; }), "kind"},
    };
    for (const Case &c : cases) {
        rm_optim *opt = reinterpret_cast<rm_optim *>(&ctx); // must be cleared
        EXPECT_EQ(rm_optim_create(ctx, net.model, &c.cfg, &opt), RM_ERR_ARGUMENT) << c.field;
        EXPECT_EQ(opt, nullptr);
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find(c.field), std::string::npos) << rm_ctx_error(ctx);
    }
    const rm_optim_config ok = rm_optim_adamw_default();
    rm_optim *opt = nullptr;
    EXPECT_EQ(rm_optim_create(ctx, nullptr, &ok, &opt), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("model"), std::string::npos);
    EXPECT_EQ(rm_optim_create(ctx, net.model, nullptr, &opt), RM_ERR_ARGUMENT);
    EXPECT_EQ(rm_optim_create(ctx, net.model, &ok, nullptr), RM_ERR_ARGUMENT);
}

TEST(Optim, StepIsRefusedForABadLearningRateOrAModelWithoutGradientsAndChangesNothing)
{
    rmtest::Ctx ctx(1);
    SmallNet net(ctx, 2, 1, false); // no training forward yet: no gradients
    const rm_optim_config cfg = rm_optim_adamw_default();
    rm_optim *opt = nullptr;
    ASSERT_EQ(rm_optim_create(ctx, net.model, &cfg, &opt), RM_OK) << rm_ctx_error(ctx);
    const std::vector<float> start = net.values();
    EXPECT_EQ(rm_optim_step(ctx, opt, cfg.lr), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("no gradient"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_optim_step(ctx, opt, -1e-3f), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("lr"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_optim_step(ctx, opt, INFINITY), RM_ERR_ARGUMENT);
    EXPECT_EQ(rm_optim_step(ctx, opt, NAN), RM_ERR_ARGUMENT);
    EXPECT_EQ(rm_optim_step(ctx, nullptr, 1e-3f), RM_ERR_ARGUMENT);
    EXPECT_EQ(rm_optim_step_count(opt), 0);
    EXPECT_TRUE(rmtest::bit_identical(net.values(), start));
    size_t n = 0;
    const float *m = rm_optim_moments(opt, RM_OPTIM_EXP_AVG, &n);
    EXPECT_TRUE(std::all_of(m, m + n, [](float e) { return e == 0.0f; }));
    EXPECT_EQ(rm_optim_moments(opt, (rm_optim_moment)2, &n), nullptr);
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(rm_optim_set_step(ctx, opt, -1), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("negative"), std::string::npos);
    EXPECT_EQ(rm_optim_step_count(opt), 0);
    rm_optim_free(opt);
    rm_optim_free(nullptr);
}

// ---- determinism and resuming -------------------------------------------------------------------------------------

TEST(Optim, OneAndTwoThreadsGiveBitIdenticalParametersAndMoments)
{
    rmtest::Ctx one(1), two(2);
    SmallNet a(one, 4, 2), b(two, 4, 2); // tensors of up to 32,000 elements: split over the threads
    ASSERT_TRUE(rmtest::bit_identical(a.values(), b.values()));
    const rm_optim_config cfg = adamw(1e-2f, 0.05f);
    rm_optim *oa = nullptr, *ob = nullptr;
    ASSERT_EQ(rm_optim_create(one, a.model, &cfg, &oa), RM_OK);
    ASSERT_EQ(rm_optim_create(two, b.model, &cfg, &ob), RM_OK);
    for (int s = 0; s < 3; s++) {
        const std::vector<float> g = random_grads(a.values().size(), 70 + (uint32_t)s);
        a.set_grads(g);
        b.set_grads(g);
        ASSERT_EQ(rm_optim_step(one, oa, cfg.lr), RM_OK);
        ASSERT_EQ(rm_optim_step(two, ob, cfg.lr), RM_OK);
    }
    EXPECT_TRUE(rmtest::bit_identical(a.values(), b.values()));
    for (rm_optim_moment w : {RM_OPTIM_EXP_AVG, RM_OPTIM_EXP_AVG_SQ}) {
        size_t na = 0, nb = 0;
        const float *ma = rm_optim_moments(oa, w, &na), *mb = rm_optim_moments(ob, w, &nb);
        ASSERT_EQ(na, nb);
        EXPECT_EQ(std::memcmp(ma, mb, na * sizeof(float)), 0);
    }
    rm_optim_free(oa);
    rm_optim_free(ob);
}

TEST(Optim, ResumingFromSavedMomentsAndStepCountIsBitIdenticalToNotStopping)
{
    rmtest::Ctx ctx(2);
    const rm_optim_config cfg = adamw(1e-2f, 0.05f);
    SmallNet whole(ctx), first(ctx), second(ctx);
    const size_t n = whole.values().size();
    std::vector<std::vector<float>> grads;
    for (uint32_t s = 0; s < 4; s++)
        grads.push_back(random_grads(n, 90 + s));

    rm_optim *ow = nullptr, *o1 = nullptr, *o2 = nullptr;
    ASSERT_EQ(rm_optim_create(ctx, whole.model, &cfg, &ow), RM_OK);
    for (int s = 0; s < 4; s++) {
        whole.set_grads(grads[(size_t)s]);
        ASSERT_EQ(rm_optim_step(ctx, ow, cfg.lr), RM_OK);
    }

    ASSERT_EQ(rm_optim_create(ctx, first.model, &cfg, &o1), RM_OK);
    for (int s = 0; s < 2; s++) {
        first.set_grads(grads[(size_t)s]);
        ASSERT_EQ(rm_optim_step(ctx, o1, cfg.lr), RM_OK);
    }
    // "Save" the first run and "load" it into a fresh model and optimizer.
    second.set_values(first.values());
    ASSERT_EQ(rm_optim_create(ctx, second.model, &cfg, &o2), RM_OK);
    for (rm_optim_moment w : {RM_OPTIM_EXP_AVG, RM_OPTIM_EXP_AVG_SQ}) {
        size_t n1 = 0, n2 = 0;
        const float *src = rm_optim_moments(o1, w, &n1);
        float *dst = rm_optim_moments(o2, w, &n2);
        ASSERT_EQ(n1, n2);
        std::memcpy(dst, src, n1 * sizeof(float));
    }
    ASSERT_EQ(rm_optim_set_step(ctx, o2, rm_optim_step_count(o1)), RM_OK);
    for (int s = 2; s < 4; s++) {
        second.set_grads(grads[(size_t)s]);
        ASSERT_EQ(rm_optim_step(ctx, o2, cfg.lr), RM_OK);
    }
    EXPECT_EQ(rm_optim_step_count(o2), 4);
    EXPECT_TRUE(rmtest::bit_identical(second.values(), whole.values()));
    rm_optim_free(ow);
    rm_optim_free(o1);
    rm_optim_free(o2);
}

// ---- schedules ----------------------------------------------------------------------------------------------------

namespace {

// The closed form, in double, as the header states it.
double closed_form(int64_t w, int64_t total, double floor_ratio, double base, int64_t s)
{
    s = std::max<int64_t>(s, 0);
    if (s < w)
        return base * double(s + 1) / double(w);
    const int64_t s0 = std::max<int64_t>(w - 1, 0);
    const double p = std::min(1.0, double(s - s0) / double(total - 1 - s0));
    const double floor = base * floor_ratio;
    return floor + (base - floor) * 0.5 * (1.0 + std::cos(M_PI * p));
}

} // namespace

TEST(Schedule, ConstantGivesTheBaseRateAtEveryStep)
{
    const rm_schedule s = rm_schedule_constant();
    rmtest::Ctx ctx(1);
    EXPECT_EQ(rm_schedule_validate(ctx, &s), RM_OK);
    for (int64_t step : {int64_t(0), int64_t(1), int64_t(79000), int64_t(1) << 40})
        EXPECT_EQ(rm_schedule_lr(&s, 1e-4f, step), 1e-4f);
    EXPECT_EQ(rm_schedule_lr(nullptr, 1e-4f, 5), 1e-4f);
}

TEST(Schedule, WarmupCosineFollowsTheClosedFormAtChosenSteps)
{
    const int64_t w = 10, total = 110;
    const float base = 1e-3f, ratio = 0.1f;
    const rm_schedule s = rm_schedule_warmup_cosine(w, total, ratio);
    rmtest::Ctx ctx(1);
    ASSERT_EQ(rm_schedule_validate(ctx, &s), RM_OK) << rm_ctx_error(ctx);
    for (int64_t step : {int64_t(0), int64_t(1), w - 1, w, int64_t(34), int64_t(59), total - 2, total - 1, total,
                         int64_t(1000000)})
        EXPECT_FLOAT_EQ(rm_schedule_lr(&s, base, step), (float)closed_form(w, total, ratio, base, step)) << step;
    // The landmarks, exactly.
    EXPECT_EQ(rm_schedule_lr(&s, base, 0), (float)(base / 10.0));
    EXPECT_EQ(rm_schedule_lr(&s, base, w - 1), base);
    EXPECT_FLOAT_EQ(rm_schedule_lr(&s, base, 59), (float)((base + (double)base * ratio) / 2.0)); // half-way
    const float floor = (float)((double)base * (double)ratio);
    EXPECT_EQ(rm_schedule_lr(&s, base, total - 1), floor);
    EXPECT_EQ(rm_schedule_lr(&s, base, total + 5), floor);
    EXPECT_EQ(rm_schedule_lr(&s, base, -3), rm_schedule_lr(&s, base, 0));
    // Rising through the warm-up, then never rising again.
    for (int64_t step = 1; step < total + 3; step++) {
        const float prev = rm_schedule_lr(&s, base, step - 1), cur = rm_schedule_lr(&s, base, step);
        if (step < w)
            EXPECT_GT(cur, prev) << step;
        else
            EXPECT_LE(cur, prev) << step;
    }
}

TEST(Schedule, WithoutWarmupTheCosineStartsAtTheBaseRate)
{
    for (int64_t w : {int64_t(0), int64_t(1)}) {
        const rm_schedule s = rm_schedule_warmup_cosine(w, 5, 0.0f);
        rmtest::Ctx ctx(1);
        ASSERT_EQ(rm_schedule_validate(ctx, &s), RM_OK) << rm_ctx_error(ctx);
        EXPECT_EQ(rm_schedule_lr(&s, 2.0f, 0), 2.0f);
        EXPECT_FLOAT_EQ(rm_schedule_lr(&s, 2.0f, 2), 1.0f); // half-way through 4 decaying steps
        EXPECT_EQ(rm_schedule_lr(&s, 2.0f, 4), 0.0f);
        for (int64_t step = 0; step < 6; step++)
            EXPECT_FLOAT_EQ(rm_schedule_lr(&s, 2.0f, step), (float)closed_form(w, 5, 0.0, 2.0, step));
    }
}

TEST(Schedule, AFloorRatioOfOneIsAWarmupThenAConstantRate)
{
    const rm_schedule s = rm_schedule_warmup_cosine(4, 50, 1.0f);
    EXPECT_EQ(rm_schedule_lr(&s, 1.0f, 0), 0.25f);
    EXPECT_EQ(rm_schedule_lr(&s, 1.0f, 2), 0.75f);
    for (int64_t step = 3; step < 60; step++)
        EXPECT_EQ(rm_schedule_lr(&s, 1.0f, step), 1.0f) << step;
}

TEST(Schedule, BadSchedulesAreRefusedWithAMessageNamingTheField)
{
    rmtest::Ctx ctx(1);
    struct Case {
        rm_schedule s;
        const char *field;
    };
    rm_schedule unknown = rm_schedule_constant();
    unknown.kind = (rm_schedule_kind)9;
    const Case cases[] = {
        {rm_schedule_warmup_cosine(-1, 10, 0.0f), "warmup_steps"},
        {rm_schedule_warmup_cosine(10, 10, 0.0f), "total_steps"},
        {rm_schedule_warmup_cosine(0, 1, 0.0f), "total_steps"},
        {rm_schedule_warmup_cosine(5, 100, -0.1f), "floor_ratio"},
        {rm_schedule_warmup_cosine(5, 100, 1.5f), "floor_ratio"},
        {rm_schedule_warmup_cosine(5, 100, NAN), "floor_ratio"},
        {unknown, "kind"},
    };
    for (const Case &c : cases) {
        EXPECT_EQ(rm_schedule_validate(ctx, &c.s), RM_ERR_ARGUMENT) << c.field;
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find(c.field), std::string::npos) << rm_ctx_error(ctx);
    }
    EXPECT_EQ(rm_schedule_validate(ctx, nullptr), RM_ERR_ARGUMENT);
    const rm_schedule shortest = rm_schedule_warmup_cosine(10, 11, 0.0f);
    EXPECT_EQ(rm_schedule_validate(ctx, &shortest), RM_OK);
}
