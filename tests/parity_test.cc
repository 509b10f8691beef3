// Parity with the PyTorch reference (tests/reference/, fixtures in tests/fixtures/ computed in float64), and the
// model files: save → load → save byte-identical, deploy-form files, and malformed files refused by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

extern "C" {
#include "model/mode_layer.h"
#include "io/safetensors.h"
}
#include "test_util.h"

namespace {

using rmtest::Tensor;

std::string fixture(const std::string &name) { return std::string(REPMODE_FIXTURE_DIR) + "/" + name; }

// A scratch folder removed with its files at the end of the test.
struct TempDir {
    std::string path;
    TempDir()
    {
        char tmpl[] = "/tmp/repmode-parity-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
    std::string file(const char *name) const { return path + "/" + name; }
};

std::vector<char> bytes_of(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct Fixture {
    rmtest::Ctx ctx{2};
    rm_model *model = nullptr;
    rm_st_file *io = nullptr;

    explicit Fixture(const std::string &stem)
    {
        EXPECT_EQ(rm_model_load(ctx, fixture(stem + ".model.safetensors").c_str(), &model), RM_OK) << rm_ctx_error(ctx);
        EXPECT_EQ(rm_st_read(ctx, fixture(stem + ".io.safetensors").c_str(), &io), RM_OK) << rm_ctx_error(ctx);
    }
    ~Fixture()
    {
        rm_model_free(model);
        rm_st_free(io);
    }
    const rm_st_entry *entry(const std::string &name) const
    {
        const rm_st_entry *e = rm_st_find(io, name.c_str());
        EXPECT_NE(e, nullptr) << "fixture lacks " << name;
        return e;
    }
    std::vector<double> values(const std::string &name) const
    {
        const rm_st_entry *e = entry(name);
        const float *p = static_cast<const float *>(e->data);
        return std::vector<double>(p, p + rm_st_numel(e));
    }
    Tensor tensor(const std::string &name) const
    {
        const rm_st_entry *e = entry(name);
        Tensor t({e->shape[0], e->shape[1], e->shape[2], e->shape[3], e->shape[4]});
        const float *p = static_cast<const float *>(e->data);
        t.data.assign(p, p + rm_st_numel(e));
        return t;
    }
};

class Parity : public ::testing::TestWithParam<const char *> {};

TEST_P(Parity, InferenceOutputsMatchPyTorchForEveryStoredTask)
{
    Fixture f(GetParam());
    ASSERT_TRUE(f.model && f.io);
    Tensor x = f.tensor("input");
    int checked = 0;
    for (int t = 0; t < rm_model_config(f.model)->n_tasks; t++) {
        const std::string name = "eval.task" + std::to_string(t) + ".output";
        if (!rm_st_find(f.io, name.c_str()))
            continue;
        const std::vector<int> tasks(x.view.ne[0], t);
        Tensor y(x.shape(), NAN), yd(x.shape(), NAN);
        ASSERT_EQ(rm_model_forward_eval(f.ctx, f.model, x.p(), tasks.data(), y.p()), RM_OK) << rm_ctx_error(f.ctx);
        EXPECT_LT(rmtest::max_rel_error(y.data, f.values(name)), 1e-4) << name << " (training form)";
        rm_deploy *d = nullptr;
        ASSERT_EQ(rm_deploy_create(f.ctx, f.model, t, &d), RM_OK) << rm_ctx_error(f.ctx);
        ASSERT_EQ(rm_deploy_forward(f.ctx, d, x.p(), yd.p()), RM_OK) << rm_ctx_error(f.ctx);
        EXPECT_LT(rmtest::max_rel_error(yd.data, f.values(name)), 1e-4) << name << " (deploy form)";
        rm_deploy_free(d);
        checked++;
    }
    EXPECT_GE(checked, std::min(2, rm_model_config(f.model)->n_tasks));
}

TEST_P(Parity, GateAndMergedKernelMatchPyTorch)
{
    Fixture f(GetParam());
    ASSERT_TRUE(f.model && f.io);
    for (size_t i = 0; i < rm_st_count(f.io); i++) {
        const std::string name = rm_st_at(f.io, i)->name;
        const bool gate = name.rfind("gate.task", 0) == 0, merged = name.rfind("merged.task", 0) == 0;
        if (!gate && !merged)
            continue;
        // "<what>.task<t>.<unit path>"
        const size_t dot = name.find('.', name.find(".task") + 1);
        const int t = std::stoi(name.substr(name.find(".task") + 5, dot - name.find(".task") - 5));
        const std::string path = name.substr(dot + 1);
        const rm_unit *u = nullptr;
        for (int k = 0; k < f.model->n_units; k++)
            if (path == f.model->units[k].path)
                u = &f.model->units[k];
        ASSERT_NE(u, nullptr) << path;
        std::vector<float> g(RM_N_EXPERTS * u->co), w((size_t)rm_unit_weight_numel(u));
        rm_mode_gate(u, t, rm_model_config(f.model)->n_tasks, g.data());
        if (gate) {
            EXPECT_LT(rmtest::max_rel_error(g, f.values(name)), 1e-5) << name;
        } else {
            rm_mode_merge(f.ctx, u, t, g.data(), w.data());
            EXPECT_LT(rmtest::max_rel_error(w, f.values(name)), 1e-5) << name;
        }
    }
}

TEST_P(Parity, TrainingStepMatchesPyTorchLossGradientsAndRunningStatistics)
{
    Fixture f(GetParam());
    ASSERT_TRUE(f.model && f.io);
    Tensor x = f.tensor("input"), target = f.tensor("train.target");
    const rm_st_entry *te = f.entry("train.tasks");
    ASSERT_EQ(te->dtype, RM_ST_I64);
    const int64_t *t64 = static_cast<const int64_t *>(te->data);
    const std::vector<int> tasks(t64, t64 + rm_st_numel(te));

    Tensor y(x.shape(), NAN), dy(x.shape());
    ASSERT_EQ(rm_model_forward_train(f.ctx, f.model, x.p(), tasks.data(), 0, y.p()), RM_OK) << rm_ctx_error(f.ctx);
    EXPECT_LT(rmtest::max_rel_error(y.data, f.values("train.output")), 1e-4);
    float loss = NAN;
    ASSERT_EQ(rm_mse_forward(f.ctx, y.p(), target.p(), &loss), RM_OK);
    EXPECT_NEAR(loss, f.values("train.loss")[0], 1e-4 * f.values("train.loss")[0]);
    ASSERT_EQ(rm_mse_backward(f.ctx, y.p(), target.p(), 1.0f, dy.p()), RM_OK);
    ASSERT_EQ(rm_model_backward(f.ctx, f.model, dy.p()), RM_OK) << rm_ctx_error(f.ctx);

    // Some gradients are zero in exact arithmetic (in the Inception network, a bias before 1³ convolutions and a
    // max-pool that feed batch-statistics BatchNorm, a single-weight 1³ convolution before one): each is measured
    // against its own largest value, or 1e-2 of the largest gradient of the network when that is larger.
    double largest = 0.0;
    for (size_t i = 0; i < rm_model_n_params(f.model); i++)
        if (rm_model_param(f.model, i)->trainable)
            for (double g : f.values(std::string("train.grad.") + rm_model_param(f.model, i)->name))
                largest = std::max(largest, std::fabs(g));
    int grads = 0, stats = 0;
    for (size_t i = 0; i < rm_model_n_params(f.model); i++) {
        const rm_param *p = rm_model_param(f.model, i);
        if (p->trainable) {
            const std::vector<double> want = f.values(std::string("train.grad.") + p->name);
            double scale = 1e-2 * largest, error = 0.0;
            for (size_t j = 0; j < want.size(); j++) {
                scale = std::max(scale, std::fabs(want[j]));
                error = std::max(error, std::fabs(p->grad[j] - want[j]));
            }
            EXPECT_LT(error / scale, 1e-4) << p->name;
            grads++;
        } else if (const rm_st_entry *after = rm_st_find(f.io, (std::string("train.after.") + p->name).c_str())) {
            EXPECT_LT(rmtest::max_rel_error(p->data, f.values(after->name).data(), (size_t)p->numel), 1e-5) << p->name;
            stats++;
        }
    }
    size_t stored = 0; // every trainable tensor's gradient is in the fixture, and was compared
    for (size_t i = 0; i < rm_st_count(f.io); i++)
        stored += std::string(rm_st_at(f.io, i)->name).rfind("train.grad.", 0) == 0;
    EXPECT_EQ((size_t)grads, stored);
    EXPECT_GT(grads, 40);
    EXPECT_GT(stats, 10);
}

TEST_P(Parity, SaveLoadSaveIsByteIdentical)
{
    Fixture f(GetParam());
    ASSERT_TRUE(f.model);
    TempDir dir;
    ASSERT_EQ(rm_model_save(f.ctx, f.model, dir.file("a.safetensors").c_str()), RM_OK) << rm_ctx_error(f.ctx);
    rm_model *again = nullptr;
    ASSERT_EQ(rm_model_load(f.ctx, dir.file("a.safetensors").c_str(), &again), RM_OK) << rm_ctx_error(f.ctx);
    ASSERT_EQ(rm_model_save(f.ctx, again, dir.file("b.safetensors").c_str()), RM_OK);
    rm_model_free(again);
    const std::vector<char> a = bytes_of(dir.file("a.safetensors")), b = bytes_of(dir.file("b.safetensors"));
    EXPECT_GT(a.size(), 1000u);
    EXPECT_TRUE(a == b);
}

TEST_P(Parity, DeployFormFileGivesTheSameNetworkForEveryTask)
{
    Fixture f(GetParam());
    ASSERT_TRUE(f.model && f.io);
    TempDir dir;
    const std::string path = dir.file("deploy.safetensors");
    ASSERT_EQ(rm_model_save_deploy(f.ctx, f.model, nullptr, 0, path.c_str()), RM_OK) << rm_ctx_error(f.ctx);
    Tensor x = f.tensor("input");
    for (int t = 0; t < rm_model_config(f.model)->n_tasks; t++) {
        const char *name = rm_model_config(f.model)->tasks[t].name;
        rm_deploy *made = nullptr, *loaded = nullptr, *from_training = nullptr;
        ASSERT_EQ(rm_deploy_create(f.ctx, f.model, t, &made), RM_OK);
        ASSERT_EQ(rm_deploy_load(f.ctx, path.c_str(), name, &loaded), RM_OK) << rm_ctx_error(f.ctx);
        ASSERT_EQ(rm_deploy_load(f.ctx, fixture(std::string(GetParam()) + ".model.safetensors").c_str(), name,
                                 &from_training),
                  RM_OK)
            << rm_ctx_error(f.ctx);
        EXPECT_EQ(rm_deploy_task(loaded), t);
        Tensor a(x.shape()), b(x.shape()), c(x.shape());
        ASSERT_EQ(rm_deploy_forward(f.ctx, made, x.p(), a.p()), RM_OK);
        ASSERT_EQ(rm_deploy_forward(f.ctx, loaded, x.p(), b.p()), RM_OK);
        ASSERT_EQ(rm_deploy_forward(f.ctx, from_training, x.p(), c.p()), RM_OK);
        EXPECT_TRUE(rmtest::bit_identical(a.data, b.data)) << name;
        EXPECT_TRUE(rmtest::bit_identical(a.data, c.data)) << name;
        rm_deploy_free(made);
        rm_deploy_free(loaded);
        rm_deploy_free(from_training);
    }
    rm_deploy *none = nullptr;
    EXPECT_EQ(rm_deploy_load(f.ctx, path.c_str(), "nucleolus", &none), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(f.ctx)).find("no task 'nucleolus'"), std::string::npos) << rm_ctx_error(f.ctx);
    rm_model *m = nullptr;
    EXPECT_EQ(rm_model_load(f.ctx, path.c_str(), &m), RM_ERR_FORMAT);
    EXPECT_NE(std::string(rm_ctx_error(f.ctx)).find("deploy-form"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Parity,
                         ::testing::Values("parity_small", "parity_frelu", "parity_2d", "parity_inception", "parity_plain"));

// ---- malformed model files ----

// Rewrites the fixture's tensors with one change, keeping its metadata.
std::string rewrite(rm_ctx *ctx, const TempDir &dir, const char *out, const std::function<void(std::vector<rm_st_entry> &)> &edit)
{
    rm_st_file *f = nullptr;
    EXPECT_EQ(rm_st_read(ctx, fixture("parity_small.model.safetensors").c_str(), &f), RM_OK);
    std::vector<rm_st_entry> entries;
    for (size_t i = 0; i < rm_st_count(f); i++)
        entries.push_back(*rm_st_at(f, i));
    edit(entries);
    std::vector<const char *> keys, values;
    for (size_t i = 0; i < rm_st_metadata_count(f); i++) {
        keys.push_back(rm_st_metadata_key(f, i));
        values.push_back(rm_st_metadata(f, keys.back()));
    }
    const std::string path = dir.file(out);
    EXPECT_EQ(rm_st_write(ctx, path.c_str(), entries.data(), entries.size(), keys.data(), values.data(), keys.size()),
              RM_OK);
    rm_st_free(f);
    return path;
}

void expect_refused(rm_ctx *ctx, const std::string &path, const std::string &needle)
{
    rm_model *m = nullptr;
    EXPECT_NE(rm_model_load(ctx, path.c_str(), &m), RM_OK);
    EXPECT_EQ(m, nullptr);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find(needle), std::string::npos) << rm_ctx_error(ctx);
}

TEST(ModelFile, MissingTruncatedAndInconsistentFilesAreRefusedByName)
{
    rmtest::Ctx ctx(1);
    TempDir dir;
    expect_refused(ctx, dir.file("absent.safetensors"), "absent.safetensors");

    const std::vector<char> whole = bytes_of(fixture("parity_small.model.safetensors"));
    std::ofstream(dir.file("cut.safetensors"), std::ios::binary).write(whole.data(), (std::streamsize)whole.size() / 2);
    expect_refused(ctx, dir.file("cut.safetensors"), "cut.safetensors");

    const float extra_data[2] = {1, 2};
    expect_refused(ctx, rewrite(ctx, dir, "extra.safetensors", [&](std::vector<rm_st_entry> &e) {
                       e.push_back({"encoder_block1.conv_more.conv1.expert_conv7x7_conv", RM_ST_F32, 1, {2}, extra_data});
                   }),
                   "unknown tensor 'encoder_block1.conv_more.conv1.expert_conv7x7_conv'");
    expect_refused(ctx, rewrite(ctx, dir, "missing.safetensors", [](std::vector<rm_st_entry> &e) {
                       e.erase(e.begin() + 3);
                   }),
                   "tensor 'encoder_block1.conv_more.conv1.expert_avg3x3_conv' is missing");
    expect_refused(ctx, rewrite(ctx, dir, "shape.safetensors", [](std::vector<rm_st_entry> &e) {
                       e[0].shape[0] = 2; // (4, 1, 5, 5, 5) → (2, 1, 5, 5, 5): half the data
                   }),
                   "tensor 'encoder_block1.conv_more.conv1.expert_conv5x5_conv' has shape (2, 1, 5, 5, 5)");
}

} // namespace

namespace {

TEST(ModelFile, ProvenanceIsAJsonObjectThatFilesKeep)
{
    rmtest::Ctx ctx(1);
    rm_model *m = nullptr;
    ASSERT_EQ(rm_model_load(ctx, fixture("parity_frelu.model.safetensors").c_str(), &m), RM_OK);
    EXPECT_EQ(rm_model_set_provenance(ctx, m, "[1, 2]"), RM_ERR_ARGUMENT);
    EXPECT_EQ(rm_model_set_provenance(ctx, m, "{\"steps\": "), RM_ERR_ARGUMENT);
    ASSERT_EQ(rm_model_set_provenance(ctx, m, "{\"steps\":7}"), RM_OK);
    TempDir dir;
    ASSERT_EQ(rm_model_save(ctx, m, dir.file("p.safetensors").c_str()), RM_OK);
    rm_st_file *f = nullptr;
    ASSERT_EQ(rm_st_read(ctx, dir.file("p.safetensors").c_str(), &f), RM_OK);
    EXPECT_STREQ(rm_st_metadata(f, "repmode.provenance"), "{\"steps\":7}");
    rm_st_free(f);
    rm_model_free(m);
}

TEST(ModelFile, ATaskWithTwoDimensionalLabelsKeepsItsOutputFieldThroughEveryForm)
{
    rmtest::Ctx ctx(1);
    rm_task tasks[2] = {rm_task_make("dna", RM_TASK_REGRESSION), rm_task_make("ink", RM_TASK_BINARY)};
    tasks[1].output_2d = 1;
    rm_config cfg = rm_config_lite(tasks, 2);
    cfg.base_channels = 2;
    cfg.levels = 1;
    cfg.patch[0] = cfg.patch[1] = cfg.patch[2] = 8;
    rm_model *m = nullptr;
    ASSERT_EQ(rm_model_create(ctx, &cfg, 5, &m), RM_OK) << rm_ctx_error(ctx);
    TempDir dir;
    const std::string a = dir.file("a.safetensors"), b = dir.file("b.safetensors"), d = dir.file("d.safetensors");
    ASSERT_EQ(rm_model_save(ctx, m, a.c_str()), RM_OK) << rm_ctx_error(ctx);
    rm_model_free(m);

    // Absent for 3D labels, so the files of existing models keep their bytes.
    rm_st_file *f = nullptr;
    ASSERT_EQ(rm_st_read(ctx, a.c_str(), &f), RM_OK);
    EXPECT_STREQ(rm_st_metadata(f, "repmode.tasks"),
                 "[{\"name\":\"dna\",\"kind\":\"regression\"},{\"name\":\"ink\",\"kind\":\"binary\",\"output\":\"2d\"}]");
    rm_st_free(f);
    ASSERT_EQ(rm_model_load(ctx, a.c_str(), &m), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_model_config(m)->tasks[0].output_2d, 0);
    EXPECT_EQ(rm_model_config(m)->tasks[1].output_2d, 1);
    ASSERT_EQ(rm_model_save(ctx, m, b.c_str()), RM_OK);
    EXPECT_TRUE(bytes_of(a) == bytes_of(b));
    const int ink = 1;
    ASSERT_EQ(rm_model_save_deploy(ctx, m, &ink, 1, d.c_str()), RM_OK) << rm_ctx_error(ctx);
    rm_model_free(m);
    rm_model_info info;
    ASSERT_EQ(rm_model_info_read(ctx, d.c_str(), &info), RM_OK) << rm_ctx_error(ctx);
    ASSERT_EQ(info.cfg.n_tasks, 1);
    EXPECT_STREQ(info.cfg.tasks[0].name, "ink");
    EXPECT_EQ(info.cfg.tasks[0].output_2d, 1);
    rm_model_info_free(&info);
}

} // namespace
