// Evaluation metrics: regression (MSE, MAE, R², Pearson, SSIM against its voxel-by-voxel definition) and binary
// (F0.5, Dice, precision, recall, ROC AUC) against naive implementations written here (the AUC against an O(n²)
// count of pairs), hand cases, masks, constant inputs, the documented conventions for empty classes, bad input and
// thread-count independence. The F0.5-best threshold against a brute force over every distinct value, and the
// model's task threshold through a file.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using rmtest::Ctx;
using rmtest::Shape;
using rmtest::Tensor;

bool selected(const Tensor *mask, size_t i) { return !mask || mask->data[i] > 0.5f; }

// ---- naive implementations -----------------------------------------------------------------------------------

rm_regression_metrics naive_regression(const Tensor &p, const Tensor &t, const Tensor *mask)
{
    std::vector<double> ps, ts;
    for (size_t i = 0; i < p.data.size(); i++)
        if (selected(mask, i))
            ps.push_back(p.data[i]), ts.push_back(t.data[i]);
    const double n = static_cast<double>(ps.size());
    double pm = 0, tm = 0;
    for (size_t i = 0; i < ps.size(); i++)
        pm += ps[i], tm += ts[i];
    pm /= n, tm /= n;
    double se = 0, ae = 0, pp = 0, tt = 0, pt = 0;
    for (size_t i = 0; i < ps.size(); i++) {
        se += (ps[i] - ts[i]) * (ps[i] - ts[i]);
        ae += std::fabs(ps[i] - ts[i]);
        pp += (ps[i] - pm) * (ps[i] - pm);
        tt += (ts[i] - tm) * (ts[i] - tm);
        pt += (ps[i] - pm) * (ts[i] - tm);
    }
    rm_regression_metrics r{};
    r.count = static_cast<int64_t>(ps.size());
    r.mse = se / n;
    r.mae = ae / n;
    r.r2 = 1.0 - se / tt;
    r.pearson = pt / std::sqrt(pp * tt);
    return r;
}

rm_binary_metrics naive_binary(const Tensor &p, const Tensor &t, const Tensor *mask, float threshold)
{
    rm_binary_metrics r{};
    std::vector<float> pos, neg;
    for (size_t i = 0; i < p.data.size(); i++) {
        if (!selected(mask, i))
            continue;
        const bool actual = t.data[i] > 0.5f, predicted = p.data[i] > threshold;
        r.tp += actual && predicted;
        r.fp += !actual && predicted;
        r.fn += actual && !predicted;
        r.tn += !actual && !predicted;
        (actual ? pos : neg).push_back(p.data[i]);
    }
    r.count = r.tp + r.fp + r.fn + r.tn;
    const double tp = r.tp, fp = r.fp, fn = r.fn;
    r.precision = tp / (tp + fp);
    r.recall = tp / (tp + fn);
    const double b2 = 0.25;
    r.f05 = (1 + b2) * r.precision * r.recall / (b2 * r.precision + r.recall);
    r.dice = 2 * tp / (2 * tp + fp + fn);
    // Every (positive, negative) pair: 1 when the positive scores higher, ½ on a tie.
    double wins = 0;
    for (float a : pos)
        for (float b : neg)
            wins += a > b ? 1.0 : a == b ? 0.5 : 0.0;
    r.auc = wins / (static_cast<double>(pos.size()) * static_cast<double>(neg.size()));
    return r;
}

void expect_regression_near(const rm_regression_metrics &got, const rm_regression_metrics &want, double tol)
{
    EXPECT_EQ(got.count, want.count);
    EXPECT_NEAR(got.mse, want.mse, tol * std::fabs(want.mse));
    EXPECT_NEAR(got.mae, want.mae, tol * std::fabs(want.mae));
    EXPECT_NEAR(got.r2, want.r2, tol);
    EXPECT_NEAR(got.pearson, want.pearson, tol);
}

void expect_binary_eq(const rm_binary_metrics &got, const rm_binary_metrics &want)
{
    EXPECT_EQ(got.count, want.count);
    EXPECT_EQ(got.tp, want.tp);
    EXPECT_EQ(got.fp, want.fp);
    EXPECT_EQ(got.fn, want.fn);
    EXPECT_EQ(got.tn, want.tn);
    EXPECT_NEAR(got.precision, want.precision, 1e-12);
    EXPECT_NEAR(got.recall, want.recall, 1e-12);
    EXPECT_NEAR(got.f05, want.f05, 1e-12);
    EXPECT_NEAR(got.dice, want.dice, 1e-12);
    EXPECT_NEAR(got.auc, want.auc, 1e-12);
}

bool same_bits(const void *a, const void *b, size_t n) { return std::memcmp(a, b, n) == 0; }

Tensor random_mask(const Shape &s, uint32_t seed)
{
    Tensor m(s);
    rmtest::fill_uniform(m.data, seed, 0.0f, 1.0f);
    return m;
}

// Probabilities on a grid of 1/32 (many ties), and targets that agree with them more often than not.
void random_binary(Tensor &p, Tensor &t, uint32_t seed, float positive_rate = 0.3f)
{
    rmtest::fill_uniform(p.data, seed, 0.0f, 1.0f);
    rmtest::fill_uniform(t.data, seed + 1, 0.0f, 1.0f);
    for (size_t i = 0; i < p.data.size(); i++) {
        const bool pos = t.data[i] < positive_rate;
        t.data[i] = pos ? 1.0f : 0.0f;
        const float q = 0.6f * p.data[i] + (pos ? 0.4f : 0.0f);
        p.data[i] = std::floor(q * 32.0f) / 32.0f;
    }
}

// ---- regression ----------------------------------------------------------------------------------------------

TEST(RegressionMetrics, MatchNaiveWithAndWithoutMask)
{
    Ctx ctx(2);
    for (const Shape &s : {Shape{1, 1, 1, 1, 7}, Shape{2, 3, 7, 6, 5}, Shape{3, 1, 41, 43, 47}}) {
        for (bool masked : {false, true}) {
            SCOPED_TRACE("numel=" + std::to_string(rmtest::numel(s)) + (masked ? " masked" : ""));
            Tensor p(s), t(s), m = random_mask(s, 501);
            rmtest::fill_uniform(t.data, 502, -2.0f, 3.0f);
            rmtest::fill_uniform(p.data, 503, -1.0f, 1.0f);
            for (size_t i = 0; i < p.data.size(); i++)
                p.data[i] += 0.8f * t.data[i] + 100.0f; // correlated, with an offset that a one-pass sum would feel
            m.data[0] = m.data[1] = 1.0f;
            rm_regression_metrics got{};
            ASSERT_EQ(rm_regression_metrics_compute(ctx, p.p(), t.p(), masked ? m.p() : nullptr, &got), RM_OK)
                << rm_ctx_error(ctx);
            expect_regression_near(got, naive_regression(p, t, masked ? &m : nullptr), 1e-10);
        }
    }
}

TEST(RegressionMetrics, HandCases)
{
    Ctx ctx(1);
    const Shape s{1, 1, 1, 1, 4};
    Tensor p(s), t(s);
    rm_regression_metrics r{};

    // Perfect prediction.
    t.data = {1, 2, 3, 4};
    p.data = t.data;
    ASSERT_EQ(rm_regression_metrics_compute(ctx, p.p(), t.p(), nullptr, &r), RM_OK);
    EXPECT_EQ(r.count, 4);
    EXPECT_EQ(r.mse, 0.0);
    EXPECT_EQ(r.mae, 0.0);
    EXPECT_EQ(r.r2, 1.0);
    EXPECT_NEAR(r.pearson, 1.0, 1e-15);

    // One error of 1: MSE ¼, MAE ¼, R² = 1 − 1/5; Pearson of (1, 2, 3, 5) with (1, 2, 3, 4) = 6.5/√(8.75·5).
    p.data = {1, 2, 3, 5};
    ASSERT_EQ(rm_regression_metrics_compute(ctx, p.p(), t.p(), nullptr, &r), RM_OK);
    EXPECT_DOUBLE_EQ(r.mse, 0.25);
    EXPECT_DOUBLE_EQ(r.mae, 0.25);
    EXPECT_DOUBLE_EQ(r.r2, 0.8);
    EXPECT_NEAR(r.pearson, 6.5 / std::sqrt(8.75 * 5.0), 1e-15);

    // An affine prediction is perfectly correlated, and a negated one anti-correlated; R² can go below 0.
    p.data = {3, 5, 7, 9};
    ASSERT_EQ(rm_regression_metrics_compute(ctx, p.p(), t.p(), nullptr, &r), RM_OK);
    EXPECT_NEAR(r.pearson, 1.0, 1e-15);
    EXPECT_LT(r.r2, 0.0);
    p.data = {-1, -2, -3, -4};
    ASSERT_EQ(rm_regression_metrics_compute(ctx, p.p(), t.p(), nullptr, &r), RM_OK);
    EXPECT_NEAR(r.pearson, -1.0, 1e-15);
    EXPECT_GE(r.pearson, -1.0);
}

// sklearn's convention for a constant target (R² 1 if perfect, else 0) and Pearson 0 for a constant side.
TEST(RegressionMetrics, ConstantInputs)
{
    Ctx ctx(1);
    const Shape s{1, 1, 1, 1, 5};
    Tensor p(s), t(s, 2.5f);
    rm_regression_metrics r{};
    p.data = t.data;
    ASSERT_EQ(rm_regression_metrics_compute(ctx, p.p(), t.p(), nullptr, &r), RM_OK);
    EXPECT_EQ(r.r2, 1.0);
    EXPECT_EQ(r.pearson, 0.0);
    EXPECT_EQ(r.mse, 0.0);
    p.data = {2.5f, 2.5f, 2.5f, 2.5f, 3.5f};
    ASSERT_EQ(rm_regression_metrics_compute(ctx, p.p(), t.p(), nullptr, &r), RM_OK);
    EXPECT_EQ(r.r2, 0.0);
    EXPECT_EQ(r.pearson, 0.0);
    EXPECT_DOUBLE_EQ(r.mse, 0.2);
    // A constant prediction of a varying target: Pearson 0, R² from the formula.
    Tensor q(s, 1.0f), u(s);
    u.data = {0, 1, 2, 3, 4};
    ASSERT_EQ(rm_regression_metrics_compute(ctx, q.p(), u.p(), nullptr, &r), RM_OK);
    EXPECT_EQ(r.pearson, 0.0);
    EXPECT_DOUBLE_EQ(r.r2, 1.0 - 15.0 / 10.0);
    // Constant where the mask looks, varying elsewhere.
    Tensor m(s, 0.0f);
    m.data[1] = m.data[2] = 1.0f;
    u.data = {9, 4, 4, -7, 100};
    q.data = {0, 4, 4, 0, 0};
    ASSERT_EQ(rm_regression_metrics_compute(ctx, q.p(), u.p(), m.p(), &r), RM_OK);
    EXPECT_EQ(r.count, 2);
    EXPECT_EQ(r.r2, 1.0);
    EXPECT_EQ(r.pearson, 0.0);
}

TEST(RegressionMetrics, MaskSelectingNothingGivesNaN)
{
    Ctx ctx(1);
    const Shape s{1, 1, 2, 2, 2};
    Tensor p(s, 1.0f), t(s, 0.0f), m(s, 0.5f);
    rm_regression_metrics r{};
    ASSERT_EQ(rm_regression_metrics_compute(ctx, p.p(), t.p(), m.p(), &r), RM_OK);
    EXPECT_EQ(r.count, 0);
    EXPECT_TRUE(std::isnan(r.mse) && std::isnan(r.mae) && std::isnan(r.r2) && std::isnan(r.pearson));
}

// ---- binary --------------------------------------------------------------------------------------------------

TEST(BinaryMetrics, MatchNaiveWithAndWithoutMask)
{
    Ctx ctx(2);
    for (const Shape &s : {Shape{1, 1, 1, 1, 9}, Shape{2, 3, 7, 6, 5}, Shape{1, 1, 17, 23, 11}}) {
        for (bool masked : {false, true}) {
            for (float threshold : {0.5f, 0.25f}) {
                SCOPED_TRACE("numel=" + std::to_string(rmtest::numel(s)) + (masked ? " masked" : "") +
                             " threshold=" + std::to_string(threshold));
                Tensor p(s), t(s), m = random_mask(s, 511);
                random_binary(p, t, 512);
                t.data[0] = 1.0f, t.data[1] = 0.0f, m.data[0] = m.data[1] = 1.0f; // both classes present,
                p.data[0] = 0.75f;                                                  // and a true positive
                rm_binary_metrics got{};
                ASSERT_EQ(rm_binary_metrics_compute(ctx, p.p(), t.p(), masked ? m.p() : nullptr, threshold, &got),
                          RM_OK)
                    << rm_ctx_error(ctx);
                expect_binary_eq(got, naive_binary(p, t, masked ? &m : nullptr, threshold));
            }
        }
    }
}

// Several chunks of 2^16 voxels, with few positives so the O(n²) AUC stays cheap: checks the chunk offsets.
TEST(BinaryMetrics, MatchNaiveAcrossChunks)
{
    Ctx ctx(2);
    const Shape s{1, 1, 37, 41, 53}; // 80401 voxels
    Tensor p(s), t(s), m = random_mask(s, 521);
    random_binary(p, t, 522, 0.003f);
    for (bool masked : {false, true}) {
        rm_binary_metrics got{};
        ASSERT_EQ(rm_binary_metrics_compute(ctx, p.p(), t.p(), masked ? m.p() : nullptr, 0.5f, &got), RM_OK);
        expect_binary_eq(got, naive_binary(p, t, masked ? &m : nullptr, 0.5f));
        EXPECT_GT(got.tp + got.fn, 50);
    }
}

TEST(BinaryMetrics, HandCases)
{
    Ctx ctx(1);
    rm_binary_metrics r{};

    // Perfect: every metric 1.
    Tensor p({1, 1, 1, 1, 6}), t({1, 1, 1, 1, 6});
    t.data = {1, 0, 1, 0, 0, 1};
    p.data = {0.9f, 0.1f, 0.8f, 0.3f, 0.2f, 0.7f};
    ASSERT_EQ(rm_binary_metrics_compute(ctx, p.p(), t.p(), nullptr, 0.5f, &r), RM_OK);
    EXPECT_EQ(r.f05, 1.0);
    EXPECT_EQ(r.dice, 1.0);
    EXPECT_EQ(r.precision, 1.0);
    EXPECT_EQ(r.recall, 1.0);
    EXPECT_EQ(r.auc, 1.0);
    EXPECT_EQ(r.tp, 3);
    EXPECT_EQ(r.tn, 3);

    // Inverted: AUC 0 and no true positive.
    for (float &v : p.data)
        v = 1.0f - v;
    ASSERT_EQ(rm_binary_metrics_compute(ctx, p.p(), t.p(), nullptr, 0.5f, &r), RM_OK);
    EXPECT_EQ(r.auc, 0.0);
    EXPECT_EQ(r.tp, 0);
    EXPECT_EQ(r.f05, 0.0);
    EXPECT_EQ(r.dice, 0.0);
    EXPECT_EQ(r.precision, 0.0);

    // Every score equal: AUC ½.
    for (float &v : p.data)
        v = 0.4f;
    ASSERT_EQ(rm_binary_metrics_compute(ctx, p.p(), t.p(), nullptr, 0.5f, &r), RM_OK);
    EXPECT_EQ(r.auc, 0.5);

    // tp 3, fp 1, fn 2, tn 4: P = ¾, R = 3/5, F0.5 = 1.25·PR/(0.25·P + R) = 5/7, Dice = 6/9.
    Tensor q({1, 1, 1, 1, 10}), u({1, 1, 1, 1, 10});
    u.data = {1, 1, 1, 1, 1, 0, 0, 0, 0, 0};
    q.data = {0.9f, 0.8f, 0.7f, 0.2f, 0.1f, 0.6f, 0.3f, 0.2f, 0.1f, 0.0f};
    ASSERT_EQ(rm_binary_metrics_compute(ctx, q.p(), u.p(), nullptr, 0.5f, &r), RM_OK);
    EXPECT_EQ(r.tp, 3);
    EXPECT_EQ(r.fp, 1);
    EXPECT_EQ(r.fn, 2);
    EXPECT_EQ(r.tn, 4);
    EXPECT_EQ(r.count, 10);
    EXPECT_DOUBLE_EQ(r.precision, 0.75);
    EXPECT_DOUBLE_EQ(r.recall, 0.6);
    EXPECT_DOUBLE_EQ(r.f05, 5.0 / 7.0);
    EXPECT_DOUBLE_EQ(r.dice, 6.0 / 9.0);
    // Pairs: positives 0.9, 0.8, 0.7 beat all 5 negatives; 0.2 beats 0.1, 0.0 and ties 0.2; 0.1 beats 0.0, ties 0.1.
    EXPECT_DOUBLE_EQ(r.auc, (15.0 + 2.5 + 1.5) / 25.0);

    // The threshold is strict: a probability equal to it is a negative prediction.
    ASSERT_EQ(rm_binary_metrics_compute(ctx, q.p(), u.p(), nullptr, 0.7f, &r), RM_OK);
    EXPECT_EQ(r.tp, 2);
    ASSERT_EQ(rm_binary_metrics_compute(ctx, q.p(), u.p(), nullptr, 0.0f, &r), RM_OK);
    EXPECT_EQ(r.tp + r.fp, 9);
    ASSERT_EQ(rm_binary_metrics_compute(ctx, q.p(), u.p(), nullptr, 1.0f, &r), RM_OK);
    EXPECT_EQ(r.tp + r.fp, 0);
    EXPECT_EQ(r.precision, 0.0); // positives missed, nothing predicted: 0, not the both-empty 1
    EXPECT_EQ(r.f05, 0.0);
}

// The documented values without positives: both empty → 1 (AUC NaN: one class); only false alarms → 0.
TEST(BinaryMetrics, EmptyClasses)
{
    Ctx ctx(1);
    const Shape s{1, 1, 1, 2, 3};
    Tensor p(s, 0.1f), t(s, 0.0f), m(s, 0.0f);
    rm_binary_metrics r{};
    ASSERT_EQ(rm_binary_metrics_compute(ctx, p.p(), t.p(), nullptr, 0.5f, &r), RM_OK);
    EXPECT_EQ(r.f05, 1.0);
    EXPECT_EQ(r.dice, 1.0);
    EXPECT_EQ(r.precision, 1.0);
    EXPECT_EQ(r.recall, 1.0);
    EXPECT_TRUE(std::isnan(r.auc));
    EXPECT_EQ(r.tn, 6);

    p.data[2] = 0.9f;
    ASSERT_EQ(rm_binary_metrics_compute(ctx, p.p(), t.p(), nullptr, 0.5f, &r), RM_OK);
    EXPECT_EQ(r.fp, 1);
    EXPECT_EQ(r.f05, 0.0);
    EXPECT_EQ(r.dice, 0.0);
    EXPECT_EQ(r.precision, 0.0);
    EXPECT_EQ(r.recall, 0.0);
    EXPECT_TRUE(std::isnan(r.auc));

    // Only positives, all found: the ratios are 1, the AUC undefined.
    Tensor one(s, 1.0f), high(s, 0.8f);
    ASSERT_EQ(rm_binary_metrics_compute(ctx, high.p(), one.p(), nullptr, 0.5f, &r), RM_OK);
    EXPECT_EQ(r.f05, 1.0);
    EXPECT_TRUE(std::isnan(r.auc));

    // A mask that selects nothing: count 0, both empty.
    ASSERT_EQ(rm_binary_metrics_compute(ctx, p.p(), t.p(), m.p(), 0.5f, &r), RM_OK);
    EXPECT_EQ(r.count, 0);
    EXPECT_EQ(r.dice, 1.0);
    EXPECT_TRUE(std::isnan(r.auc));
}

// Voxels outside the mask do not count, whatever they hold (NaN included).
TEST(BinaryMetrics, MaskedVoxelsDoNotCount)
{
    Ctx ctx(1);
    const Shape s{1, 1, 1, 1, 6};
    Tensor p(s), t(s), m(s);
    t.data = {1, 0, 1, 0, 1, 0};
    p.data = {0.9f, 0.1f, 0.2f, 0.8f, NAN, INFINITY};
    m.data = {1, 1, 0, 0, 0, 0.5f};
    rm_binary_metrics r{};
    ASSERT_EQ(rm_binary_metrics_compute(ctx, p.p(), t.p(), m.p(), 0.5f, &r), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(r.count, 2);
    EXPECT_EQ(r.f05, 1.0);
    EXPECT_EQ(r.auc, 1.0);
}

// ---- the best threshold --------------------------------------------------------------------------------------

// The counts of a threshold over the selected voxels, by a loop of their own.
struct Counts {
    int64_t tp = 0, fp = 0, fn = 0;
};

Counts naive_counts(const Tensor &p, const Tensor &t, const Tensor *mask, float threshold)
{
    Counts c;
    for (size_t i = 0; i < p.data.size(); i++) {
        if (!selected(mask, i))
            continue;
        const bool actual = t.data[i] > 0.5f, predicted = p.data[i] > threshold;
        c.tp += actual && predicted;
        c.fp += !actual && predicted;
        c.fn += actual && !predicted;
    }
    return c;
}

// F0.5 = 5·tp / (5·tp + fn + 4·fp) as an exact fraction (1/1 when both are empty), compared by cross-multiplying.
struct Fraction {
    int64_t num, den;
};

Fraction f05_fraction(const Counts &c)
{
    if (c.tp == 0 && c.fp == 0 && c.fn == 0)
        return {1, 1};
    return {5 * c.tp, 5 * c.tp + c.fn + 4 * c.fp};
}

struct Brute {
    float threshold;
    Counts counts;
    double f05;
};

// Every distinct selected value as the threshold, and 0 and 1 (everything and nothing positive): the best F0.5, ties
// to the highest threshold.
Brute brute_best_threshold(const Tensor &p, const Tensor &t, const Tensor *mask)
{
    std::set<float> candidates{0.0f, 1.0f};
    for (size_t i = 0; i < p.data.size(); i++)
        if (selected(mask, i))
            candidates.insert(p.data[i]);
    Brute best{NAN, {}, -1.0};
    Fraction best_f{-1, 1};
    for (auto it = candidates.rbegin(); it != candidates.rend(); ++it) {
        const Counts c = naive_counts(p, t, mask, *it);
        const Fraction f = f05_fraction(c);
        if (f.num * best_f.den > best_f.num * f.den) {
            best = {*it, c, static_cast<double>(f.num) / static_cast<double>(f.den)};
            best_f = f;
        }
    }
    return best;
}

// The best threshold, checked against the brute force: the same F0.5, the same cut, the F0.5 that
// rm_binary_metrics_compute gives it, and the same bits on one and two threads.
void expect_best_matches_brute(const Tensor &p, const Tensor &t, const Tensor *mask)
{
    Tensor &pp = const_cast<Tensor &>(p), &tt = const_cast<Tensor &>(t);
    rm_tensor *mp = mask ? const_cast<Tensor *>(mask)->p() : nullptr;
    rm_best_threshold got{}, again{};
    Ctx one(1), two(2);
    ASSERT_EQ(rm_binary_best_threshold(one, pp.p(), tt.p(), mp, &got), RM_OK) << rm_ctx_error(one);
    ASSERT_EQ(rm_binary_best_threshold(two, pp.p(), tt.p(), mp, &again), RM_OK) << rm_ctx_error(two);
    EXPECT_TRUE(same_bits(&got.threshold, &again.threshold, sizeof got.threshold)); // fields: the struct has padding
    EXPECT_TRUE(same_bits(&got.f05, &again.f05, sizeof got.f05));
    EXPECT_EQ(got.count, again.count);

    const Brute want = brute_best_threshold(p, t, mask);
    EXPECT_NEAR(got.f05, want.f05, 1e-12);
    EXPECT_GE(got.threshold, 0.0f);
    EXPECT_LE(got.threshold, 1.0f);
    const Counts c = naive_counts(p, t, mask, got.threshold);
    EXPECT_EQ(c.tp, want.counts.tp) << "threshold " << got.threshold << ", brute force " << want.threshold;
    EXPECT_EQ(c.fp, want.counts.fp) << "threshold " << got.threshold << ", brute force " << want.threshold;

    rm_binary_metrics bm{};
    ASSERT_EQ(rm_binary_metrics_compute(one, pp.p(), tt.p(), mp, got.threshold, &bm), RM_OK);
    EXPECT_EQ(bm.f05, got.f05);
    EXPECT_EQ(got.count, bm.count);
}

TEST(BestThreshold, MatchesBruteForceOnRandomData)
{
    for (const Shape &s : {Shape{1, 1, 1, 1, 9}, Shape{2, 3, 7, 6, 5}, Shape{1, 1, 17, 23, 11}}) {
        for (bool masked : {false, true}) {
            for (float rate : {0.3f, 0.05f, 0.7f}) {
                for (bool grid : {true, false}) {
                    SCOPED_TRACE("numel=" + std::to_string(rmtest::numel(s)) + (masked ? " masked" : "") +
                                 " rate=" + std::to_string(rate) + (grid ? " ties" : " continuous"));
                    Tensor p(s), t(s), m = random_mask(s, 541);
                    random_binary(p, t, 542, rate);
                    if (!grid) // nearly every value distinct
                        rmtest::fill_uniform(p.data, 543, 0.0f, 1.0f);
                    expect_best_matches_brute(p, t, masked ? &m : nullptr);
                }
            }
        }
    }
}

// Several chunks of 2^16 voxels: the scores gathered at each chunk's offsets.
TEST(BestThreshold, MatchesBruteForceAcrossChunks)
{
    const Shape s{1, 1, 37, 41, 53}; // 80401 voxels
    Tensor p(s), t(s), m = random_mask(s, 551);
    random_binary(p, t, 552, 0.02f);
    for (bool masked : {false, true})
        expect_best_matches_brute(p, t, masked ? &m : nullptr);
}

TEST(BestThreshold, HandCases)
{
    Ctx ctx(1);
    rm_best_threshold r{};

    // Descending: 0.9 P, 0.8 P, 0.7 P | 0.6 N, 0.3 N, 0.2 P, 0.2 N, 0.1 P, 0.1 N, 0.0 N. The top three give
    // tp 3, fp 0, fn 2: F0.5 = 15/17, the best; the threshold is the midpoint of 0.7 and 0.6.
    Tensor q({1, 1, 1, 1, 10}), u({1, 1, 1, 1, 10});
    u.data = {1, 1, 1, 1, 1, 0, 0, 0, 0, 0};
    q.data = {0.9f, 0.8f, 0.7f, 0.2f, 0.1f, 0.6f, 0.3f, 0.2f, 0.1f, 0.0f};
    ASSERT_EQ(rm_binary_best_threshold(ctx, q.p(), u.p(), nullptr, &r), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(r.threshold, static_cast<float>((static_cast<double>(0.7f) + 0.6f) / 2));
    EXPECT_DOUBLE_EQ(r.f05, 15.0 / 17.0);
    EXPECT_EQ(r.count, 10);

    // Ties go to the highest threshold: 0.9 P | 0.8 N, 0.7 P | ... gives 5·1/(5 + 3) = 5·2/(10 + 2 + 4) = 0.625.
    Tensor a({1, 1, 1, 1, 9}), b({1, 1, 1, 1, 9});
    a.data = {0.9f, 0.8f, 0.7f, 0.5f, 0.5f, 0.5f, 0.5f, 0.3f, 0.2f};
    b.data = {1, 0, 1, 0, 0, 0, 0, 1, 1};
    ASSERT_EQ(rm_binary_best_threshold(ctx, a.p(), b.p(), nullptr, &r), RM_OK);
    EXPECT_EQ(r.f05, 0.625);
    EXPECT_EQ(r.threshold, static_cast<float>((static_cast<double>(0.9f) + 0.8f) / 2));

    // Adjacent floats: no midpoint between them, the lower one is the threshold.
    Tensor c({1, 1, 1, 1, 2}), d({1, 1, 1, 1, 2});
    c.data = {0.5f, std::nextafter(0.5f, 0.0f)};
    d.data = {1, 0};
    ASSERT_EQ(rm_binary_best_threshold(ctx, c.p(), d.p(), nullptr, &r), RM_OK);
    EXPECT_EQ(r.threshold, c.data[1]);
    EXPECT_EQ(r.f05, 1.0);

    // Scores above 1: no threshold in [0, 1] separates 1.5 from 1.2, so everything is positive (threshold 0).
    c.data = {1.5f, 1.2f};
    ASSERT_EQ(rm_binary_best_threshold(ctx, c.p(), d.p(), nullptr, &r), RM_OK);
    EXPECT_EQ(r.threshold, 0.0f);
    EXPECT_DOUBLE_EQ(r.f05, 5.0 / 9.0);
}

// One class only: nothing positive (threshold 1) without positives, everything positive (threshold 0) with only
// positives unless the lowest probability is 0; an empty selection is both empty.
TEST(BestThreshold, OneClassAndEmptySelection)
{
    Ctx ctx(1);
    const Shape s{1, 1, 1, 2, 3};
    Tensor p(s), zero(s, 0.0f), one(s, 1.0f), none(s, 0.0f), m(s, 1.0f);
    p.data = {0.1f, 0.9f, 0.4f, 0.4f, 1.0f, 0.6f};
    m.data[4] = 0.0f;
    rm_best_threshold r{};
    for (bool masked : {false, true}) {
        const Tensor *mask = masked ? &m : nullptr;
        rm_tensor *mp = masked ? m.p() : nullptr;
        ASSERT_EQ(rm_binary_best_threshold(ctx, p.p(), zero.p(), mp, &r), RM_OK);
        EXPECT_EQ(r.threshold, 1.0f);
        EXPECT_EQ(r.f05, 1.0);
        ASSERT_EQ(rm_binary_best_threshold(ctx, p.p(), one.p(), mp, &r), RM_OK);
        EXPECT_EQ(r.threshold, 0.0f);
        EXPECT_EQ(r.f05, 1.0);
        expect_best_matches_brute(p, zero, mask);
        expect_best_matches_brute(p, one, mask);
    }
    // All positive, one of them at 0: 0 cannot be predicted positive, the cut is just above it.
    p.data[0] = 0.0f;
    ASSERT_EQ(rm_binary_best_threshold(ctx, p.p(), one.p(), nullptr, &r), RM_OK);
    EXPECT_EQ(r.threshold, 0.2f);
    EXPECT_DOUBLE_EQ(r.f05, 25.0 / 26.0); // tp 5, fn 1
    expect_best_matches_brute(p, one, nullptr);

    ASSERT_EQ(rm_binary_best_threshold(ctx, p.p(), one.p(), none.p(), &r), RM_OK);
    EXPECT_EQ(r.count, 0);
    EXPECT_EQ(r.threshold, 1.0f);
    EXPECT_EQ(r.f05, 1.0);
}

TEST(BestThreshold, RejectsBadInputAndLeavesOutputUntouched)
{
    Ctx ctx(1);
    const Shape s{1, 1, 2, 3, 3};
    Tensor p(s, 0.2f), t(s, 1.0f), wrong({1, 1, 2, 3, 1});
    rm_best_threshold r{7, 7, 7};
    auto expect_fail = [&](rm_status got, rm_status want, const char *names) {
        EXPECT_EQ(got, want);
        const std::string msg = rm_ctx_error(ctx);
        EXPECT_EQ(msg.rfind("best threshold: ", 0), 0u) << msg;
        EXPECT_NE(msg.find(names), std::string::npos) << msg;
        EXPECT_TRUE(r.threshold == 7 && r.f05 == 7 && r.count == 7);
    };
    expect_fail(rm_binary_best_threshold(ctx, p.p(), wrong.p(), nullptr, &r), RM_ERR_SHAPE, "target");
    expect_fail(rm_binary_best_threshold(ctx, p.p(), t.p(), nullptr, nullptr), RM_ERR_ARGUMENT, "out");
    p.data[5] = NAN;
    expect_fail(rm_binary_best_threshold(ctx, p.p(), t.p(), nullptr, &r), RM_ERR_ARGUMENT, "prob has a NaN");
}

// The threshold set on a model travels in its file (repmode.tasks); NaN clears it; bad values are refused.
TEST(BestThreshold, AModelFileCarriesTheTaskThreshold)
{
    Ctx ctx(1);
    rm_task tasks[2] = {rm_task_make("nuclei", RM_TASK_REGRESSION), rm_task_make("ink", RM_TASK_BINARY)};
    rm_config cfg = rm_config_lite(tasks, 2);
    cfg.base_channels = 2;
    cfg.levels = 1;
    rm_model *model = nullptr;
    ASSERT_EQ(rm_model_create(ctx, &cfg, 1, &model), RM_OK) << rm_ctx_error(ctx);
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("repmode-threshold-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "m.safetensors").string();
    auto saved_threshold = [&]() {
        EXPECT_EQ(rm_model_save(ctx, model, path.c_str()), RM_OK) << rm_ctx_error(ctx);
        rm_model_info info{};
        EXPECT_EQ(rm_model_info_read(ctx, path.c_str(), &info), RM_OK) << rm_ctx_error(ctx);
        const float t = info.cfg.tasks[1].threshold;
        EXPECT_TRUE(std::isnan(info.cfg.tasks[0].threshold));
        rm_model_info_free(&info);
        return t;
    };

    EXPECT_TRUE(std::isnan(saved_threshold()));
    const float tuned = 0.7734375f + 1e-7f; // not a short decimal
    ASSERT_EQ(rm_model_set_task_threshold(ctx, model, 1, tuned), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_model_config(model)->tasks[1].threshold, tuned);
    EXPECT_EQ(saved_threshold(), tuned);
    for (float bad : {-0.01f, 1.01f, INFINITY}) {
        EXPECT_EQ(rm_model_set_task_threshold(ctx, model, 1, bad), RM_ERR_ARGUMENT);
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find("ink"), std::string::npos) << rm_ctx_error(ctx);
    }
    for (int task : {-1, 2}) {
        EXPECT_EQ(rm_model_set_task_threshold(ctx, model, task, 0.5f), RM_ERR_ARGUMENT);
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find("task " + std::to_string(task)), std::string::npos);
    }
    EXPECT_EQ(rm_model_config(model)->tasks[1].threshold, tuned);
    ASSERT_EQ(rm_model_set_task_threshold(ctx, model, 1, NAN), RM_OK);
    EXPECT_TRUE(std::isnan(saved_threshold()));
    rm_model_free(model);
    std::filesystem::remove_all(dir);
}

// ---- bad input -----------------------------------------------------------------------------------------------

TEST(Metrics, RejectNonFiniteInputWithAClearError)
{
    Ctx ctx(2);
    const Shape s{1, 1, 37, 41, 53}; // several chunks: the first bad element is named, whatever the threads
    Tensor p(s, 0.25f), t(s, 1.0f), m(s, 1.0f);
    const rm_regression_metrics reg0{7, 7, 7, 7, 7, 7, 7};
    const rm_binary_metrics bin0{7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
    auto expect_fail = [&](const char *tensor, const char *value, size_t index) {
        rm_regression_metrics reg = reg0;
        rm_binary_metrics bin = bin0;
        EXPECT_EQ(rm_regression_metrics_compute(ctx, p.p(), t.p(), m.p(), &reg), RM_ERR_ARGUMENT);
        std::string msg = rm_ctx_error(ctx);
        EXPECT_EQ(msg.rfind("regression metrics: ", 0), 0u) << msg;
        EXPECT_NE(msg.find(value), std::string::npos) << msg;
        EXPECT_NE(msg.find(std::string(tensor == std::string("prob") ? "pred" : tensor)), std::string::npos) << msg;
        EXPECT_NE(msg.find(std::to_string(index)), std::string::npos) << msg;
        EXPECT_TRUE(same_bits(&reg, &reg0, sizeof reg));
        EXPECT_EQ(rm_binary_metrics_compute(ctx, p.p(), t.p(), m.p(), 0.5f, &bin), RM_ERR_ARGUMENT);
        msg = rm_ctx_error(ctx);
        EXPECT_EQ(msg.rfind("binary metrics: ", 0), 0u) << msg;
        EXPECT_NE(msg.find(value), std::string::npos) << msg;
        EXPECT_NE(msg.find(tensor), std::string::npos) << msg;
        EXPECT_NE(msg.find(std::to_string(index)), std::string::npos) << msg;
        EXPECT_TRUE(same_bits(&bin, &bin0, sizeof bin));
    };
    p.data[70001] = NAN;
    p.data[70002] = INFINITY;
    expect_fail("prob", "NaN", 70001);
    p.data[70001] = 0.25f;
    expect_fail("prob", "infinite", 70002);
    t.data[70000] = -INFINITY;
    expect_fail("target", "infinite", 70000);
    t.data[66000] = NAN;
    expect_fail("target", "NaN", 66000);
    m.data[3] = NAN; // a NaN in the mask is an error even though it would not select
    expect_fail("mask", "NaN", 3);
}

TEST(Metrics, RejectBadArgumentsAndLeaveOutputUntouched)
{
    Ctx ctx(1);
    const Shape s{1, 2, 3, 3, 3};
    Tensor p(s, 0.2f), t(s, 1.0f), m(s, 1.0f), wrong({1, 2, 3, 3, 1});
    const rm_regression_metrics reg0{7, 7, 7, 7, 7, 7, 7};
    const rm_binary_metrics bin0{7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
    rm_regression_metrics reg = reg0;
    rm_binary_metrics bin = bin0;
    auto expect_fail = [&](rm_status got, rm_status want, const char *prefix, const char *names) {
        EXPECT_EQ(got, want);
        const std::string msg = rm_ctx_error(ctx);
        EXPECT_EQ(msg.rfind(prefix, 0), 0u) << msg;
        EXPECT_NE(msg.find(names), std::string::npos) << msg;
        EXPECT_TRUE(same_bits(&reg, &reg0, sizeof reg));
        EXPECT_TRUE(same_bits(&bin, &bin0, sizeof bin));
    };
    const char *R = "regression metrics: ", *B = "binary metrics: ";
    expect_fail(rm_regression_metrics_compute(ctx, nullptr, t.p(), m.p(), &reg), RM_ERR_ARGUMENT, R, "pred");
    expect_fail(rm_regression_metrics_compute(ctx, p.p(), nullptr, m.p(), &reg), RM_ERR_ARGUMENT, R, "target");
    expect_fail(rm_regression_metrics_compute(ctx, p.p(), wrong.p(), m.p(), &reg), RM_ERR_SHAPE, R, "target");
    expect_fail(rm_regression_metrics_compute(ctx, p.p(), t.p(), wrong.p(), &reg), RM_ERR_SHAPE, R, "mask");
    expect_fail(rm_regression_metrics_compute(ctx, p.p(), t.p(), m.p(), nullptr), RM_ERR_ARGUMENT, R, "out");
    expect_fail(rm_binary_metrics_compute(ctx, nullptr, t.p(), m.p(), 0.5f, &bin), RM_ERR_ARGUMENT, B, "prob");
    expect_fail(rm_binary_metrics_compute(ctx, p.p(), wrong.p(), m.p(), 0.5f, &bin), RM_ERR_SHAPE, B, "target");
    expect_fail(rm_binary_metrics_compute(ctx, p.p(), t.p(), wrong.p(), 0.5f, &bin), RM_ERR_SHAPE, B, "mask");
    expect_fail(rm_binary_metrics_compute(ctx, p.p(), t.p(), m.p(), 0.5f, nullptr), RM_ERR_ARGUMENT, B, "out");
    for (float bad : {-0.1f, 1.5f, NAN, INFINITY})
        expect_fail(rm_binary_metrics_compute(ctx, p.p(), t.p(), m.p(), bad, &bin), RM_ERR_ARGUMENT, B, "threshold");
}

TEST(Metrics, BitIdenticalOnOneAndTwoThreads)
{
    const Shape s{2, 1, 37, 41, 53}; // 160802 voxels: three chunks
    Tensor p(s), t(s), m = random_mask(s, 531), pr(s), tr(s);
    random_binary(p, t, 532);
    rmtest::fill_uniform(pr.data, 533, -2.0f, 2.0f);
    rmtest::fill_uniform(tr.data, 534, -2.0f, 2.0f);
    for (size_t i = 0; i < pr.data.size(); i++)
        pr.data[i] += 0.5f * tr.data[i];
    rm_regression_metrics reg_ref{};
    rm_binary_metrics bin_ref{};
    for (int run = 0; run < 3; run++) {
        Ctx ctx(run == 0 ? 1 : 2);
        rm_regression_metrics reg{};
        rm_binary_metrics bin{};
        ASSERT_EQ(rm_regression_metrics_compute(ctx, pr.p(), tr.p(), m.p(), &reg), RM_OK);
        ASSERT_EQ(rm_binary_metrics_compute(ctx, p.p(), t.p(), m.p(), 0.5f, &bin), RM_OK);
        if (run == 0) {
            reg_ref = reg, bin_ref = bin;
            continue;
        }
        EXPECT_TRUE(same_bits(&reg, &reg_ref, sizeof reg));
        EXPECT_TRUE(same_bits(&bin, &bin_ref, sizeof bin));
    }
}

// ---- SSIM ----------------------------------------------------------------------------------------------------

// The definition, voxel by voxel: the Gaussian-weighted moments over each whole window (11 taps of σ = 1.5 per axis
// of more than one voxel), the index, and its mean over the selected voxels whose window lies inside.
double naive_ssim(const Tensor &p, const Tensor &t, const Tensor *mask, double range)
{
    const Shape s = p.shape();
    double g[11], gsum = 0;
    for (int i = 0; i < 11; i++)
        gsum += g[i] = std::exp(-(i - 5) * (i - 5) / (2 * 1.5 * 1.5));
    const int r[3] = {s[2] > 1 ? 5 : 0, s[3] > 1 ? 5 : 0, s[4] > 1 ? 5 : 0};
    auto weight = [&](int axis, int i) { return r[axis] ? g[i] / gsum : 1.0; };
    const double c1 = (0.01 * range) * (0.01 * range), c2 = (0.03 * range) * (0.03 * range);
    const int64_t vox = s[2] * s[3] * s[4];
    double sum = 0;
    int64_t count = 0;
    for (int64_t v = 0; v < s[0] * s[1]; v++)
        for (int64_t z = r[0]; z < s[2] - r[0]; z++)
            for (int64_t y = r[1]; y < s[3] - r[1]; y++)
                for (int64_t x = r[2]; x < s[4] - r[2]; x++) {
                    const int64_t centre = v * vox + (z * s[3] + y) * s[4] + x;
                    if (!selected(mask, static_cast<size_t>(centre)))
                        continue;
                    double mp = 0, mt = 0, pp = 0, tt = 0, pt = 0;
                    for (int a = -r[0]; a <= r[0]; a++)
                        for (int b = -r[1]; b <= r[1]; b++)
                            for (int c = -r[2]; c <= r[2]; c++) {
                                const double wt = weight(0, a + 5) * weight(1, b + 5) * weight(2, c + 5);
                                const int64_t i = v * vox + ((z + a) * s[3] + y + b) * s[4] + x + c;
                                const double pv = p.data[i], tv = t.data[i];
                                mp += wt * pv, mt += wt * tv, pp += wt * pv * pv, tt += wt * tv * tv, pt += wt * pv * tv;
                            }
                    const double vp = pp - mp * mp, vt = tt - mt * mt, cov = pt - mp * mt;
                    sum += (2 * mp * mt + c1) * (2 * cov + c2) / ((mp * mp + mt * mt + c1) * (vp + vt + c2));
                    count++;
                }
    return count ? sum / static_cast<double>(count) : NAN;
}

// A target with structure and a prediction that follows it loosely, far from zero (a variance computed as a
// difference of large moments in float would show it).
void ssim_pair(Tensor &p, Tensor &t, uint32_t seed)
{
    rmtest::fill_uniform(t.data, seed, -2.0f, 3.0f);
    rmtest::fill_uniform(p.data, seed + 1, -1.0f, 1.0f);
    for (size_t i = 0; i < p.data.size(); i++) {
        t.data[i] += 200.0f + 2.0f * std::sin(0.3f * static_cast<float>(i % 97));
        p.data[i] += 0.7f * t.data[i] + 60.0f;
    }
}

TEST(Ssim, MatchesTheDefinitionWithAndWithoutMask)
{
    Ctx ctx(2);
    // One volume, several volumes (N·C), a 2D image (depth 1), windows that just fit (11 along an axis).
    for (const Shape &s : {Shape{1, 1, 13, 14, 15}, Shape{2, 2, 12, 11, 16}, Shape{1, 1, 1, 20, 23}}) {
        for (bool masked : {false, true}) {
            SCOPED_TRACE("numel=" + std::to_string(rmtest::numel(s)) + (masked ? " masked" : ""));
            Tensor p(s), t(s), m = random_mask(s, 611);
            ssim_pair(p, t, 612);
            const double range = 7.5;
            double got = 0;
            ASSERT_EQ(rm_ssim_compute(ctx, p.p(), t.p(), masked ? m.p() : nullptr, range, &got), RM_OK)
                << rm_ctx_error(ctx);
            const double want = naive_ssim(p, t, masked ? &m : nullptr, range);
            EXPECT_NEAR(got, want, 1e-9 * std::fabs(want));
            EXPECT_GT(want, 0.05); // a real similarity, not a degenerate one
            EXPECT_LT(want, 0.95);
        }
    }
}

TEST(Ssim, ClosedForms)
{
    Ctx ctx(1);
    const Shape s{1, 1, 12, 13, 11};
    Tensor p(s), t(s);
    ssim_pair(p, t, 621);
    double got = 0;
    // A volume against itself: 1.
    ASSERT_EQ(rm_ssim_compute(ctx, t.p(), t.p(), nullptr, 5.0, &got), RM_OK);
    EXPECT_NEAR(got, 1.0, 1e-12);
    // Two constant volumes a and b: no variance, so only the luminance term (2ab + C1) / (a² + b² + C1) is left.
    const double a = 3.0, b = 5.0, L = 2.0, c1 = (0.01 * L) * (0.01 * L);
    Tensor pa(s, static_cast<float>(a)), tb(s, static_cast<float>(b));
    ASSERT_EQ(rm_ssim_compute(ctx, pa.p(), tb.p(), nullptr, L, &got), RM_OK);
    EXPECT_NEAR(got, (2 * a * b + c1) / (a * a + b * b + c1), 1e-10); // variances of rounding error over C2
    // The index is symmetric in its two volumes.
    double swapped = 0;
    ASSERT_EQ(rm_ssim_compute(ctx, p.p(), t.p(), nullptr, L, &got), RM_OK);
    ASSERT_EQ(rm_ssim_compute(ctx, t.p(), p.p(), nullptr, L, &swapped), RM_OK);
    EXPECT_EQ(got, swapped);
}

TEST(Ssim, NoWindowOrNoSelectedVoxelGivesNaN)
{
    Ctx ctx(1);
    const Shape thin{1, 1, 10, 20, 20}; // 10 voxels: no 11-tap window fits along depth
    Tensor p(thin, 1.0f), t(thin, 2.0f);
    double got = 0;
    ASSERT_EQ(rm_ssim_compute(ctx, p.p(), t.p(), nullptr, 1.0, &got), RM_OK);
    EXPECT_TRUE(std::isnan(got));
    const Shape s{1, 1, 11, 11, 11};
    Tensor q(s, 1.0f), u(s, 2.0f), none(s, 0.0f);
    ASSERT_EQ(rm_ssim_compute(ctx, q.p(), u.p(), none.p(), 1.0, &got), RM_OK);
    EXPECT_TRUE(std::isnan(got));
}

TEST(Ssim, RejectsNonFiniteValuesAndABadRange)
{
    Ctx ctx(1);
    const Shape s{1, 1, 11, 12, 13};
    Tensor p(s), t(s), m(s, 1.0f);
    ssim_pair(p, t, 631);
    double got = 7;
    for (double bad : {0.0, -1.0, static_cast<double>(NAN), static_cast<double>(INFINITY)}) {
        EXPECT_EQ(rm_ssim_compute(ctx, p.p(), t.p(), nullptr, bad, &got), RM_ERR_ARGUMENT);
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find("data range"), std::string::npos) << rm_ctx_error(ctx);
    }
    // A NaN outside the mask still meets the windows of selected voxels.
    t.data[5] = NAN;
    m.data[5] = 0.0f;
    EXPECT_EQ(rm_ssim_compute(ctx, p.p(), t.p(), m.p(), 1.0, &got), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("target has 1 values that are not finite, the first at element 5"),
              std::string::npos)
        << rm_ctx_error(ctx);
    EXPECT_EQ(got, 7.0);
    // The regression metrics measure the selected voxels and leave SSIM undefined.
    rm_regression_metrics r{};
    ASSERT_EQ(rm_regression_metrics_compute(ctx, p.p(), t.p(), m.p(), &r), RM_OK) << rm_ctx_error(ctx);
    EXPECT_TRUE(std::isfinite(r.mse));
    EXPECT_TRUE(std::isnan(r.ssim));
}

TEST(RegressionMetrics, ReportSsimOverTheTargetsRange)
{
    Ctx ctx(2);
    const Shape s{1, 1, 14, 12, 13};
    Tensor p(s), t(s), m = random_mask(s, 641);
    ssim_pair(p, t, 642);
    for (bool masked : {false, true}) {
        const Tensor *mask = masked ? &m : nullptr;
        float lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < t.data.size(); i++)
            if (selected(mask, i))
                lo = std::min(lo, t.data[i]), hi = std::max(hi, t.data[i]);
        rm_regression_metrics r{};
        ASSERT_EQ(rm_regression_metrics_compute(ctx, p.p(), t.p(), masked ? m.p() : nullptr, &r), RM_OK);
        EXPECT_EQ(r.ssim_range, static_cast<double>(hi) - lo);
        const double want = naive_ssim(p, t, mask, r.ssim_range);
        EXPECT_NEAR(r.ssim, want, 1e-9 * std::fabs(want));
    }
    // A constant target has no range: SSIM is undefined, the range 0.
    Tensor c(s, 4.0f);
    rm_regression_metrics r{};
    ASSERT_EQ(rm_regression_metrics_compute(ctx, p.p(), c.p(), nullptr, &r), RM_OK);
    EXPECT_EQ(r.ssim_range, 0.0);
    EXPECT_TRUE(std::isnan(r.ssim));
}

} // namespace
