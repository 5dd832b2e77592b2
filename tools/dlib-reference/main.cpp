// Generates facegate's dlib reference data (crates/facegate-models/tests/data/dlib_reference.json)
// with real dlib: HOG face detection, 5-point landmarks, 150x150 face chips and the
// ResNet face descriptor. Not run in CI; see README.md.
#include <dlib/dnn.h>
#include <dlib/image_io.h>
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/revision.h>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using namespace dlib;

// The network type from dlib's examples/dnn_face_recognition_ex.cpp.
template <template <int, template <typename> class, int, typename> class block, int N,
          template <typename> class BN, typename SUBNET>
using residual = add_prev1<block<N, BN, 1, tag1<SUBNET>>>;
template <template <int, template <typename> class, int, typename> class block, int N,
          template <typename> class BN, typename SUBNET>
using residual_down = add_prev2<avg_pool<2, 2, 2, 2, skip1<tag2<block<N, BN, 2, tag1<SUBNET>>>>>>;
template <int N, template <typename> class BN, int stride, typename SUBNET>
using block = BN<con<N, 3, 3, 1, 1, relu<BN<con<N, 3, 3, stride, stride, SUBNET>>>>>;
template <int N, typename SUBNET> using ares = relu<residual<block, N, affine, SUBNET>>;
template <int N, typename SUBNET> using ares_down = relu<residual_down<block, N, affine, SUBNET>>;
template <typename SUBNET> using alevel0 = ares_down<256, SUBNET>;
template <typename SUBNET> using alevel1 = ares<256, ares<256, ares_down<256, SUBNET>>>;
template <typename SUBNET> using alevel2 = ares<128, ares<128, ares_down<128, SUBNET>>>;
template <typename SUBNET> using alevel3 = ares<64, ares<64, ares<64, ares_down<64, SUBNET>>>>;
template <typename SUBNET> using alevel4 = ares<32, ares<32, ares<32, SUBNET>>>;
using anet_type = loss_metric<fc_no_bias<128, avg_pool_everything<
    alevel0<alevel1<alevel2<alevel3<alevel4<
    max_pool<3, 3, 2, 2, relu<affine<con<32, 7, 7, 2, 2, input_rgb_image_sized<150>>>>>>>>>>>>>;

static std::string fmt_f(double v, int prec) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    return buf;
}

static std::string floats(const matrix<float, 0, 1>& m) {
    std::ostringstream o;
    o << "[";
    for (long i = 0; i < m.size(); ++i) o << (i ? "," : "") << fmt_f(m(i), 9);
    o << "]";
    return o.str();
}

// FNV-1a over the image's RGB bytes in row-major order (same as image::RgbImage's raw buffer).
static uint64_t fnv(const matrix<rgb_pixel>& img) {
    uint64_t h = 1469598103934665603ull;
    auto eat = [&](unsigned char b) { h ^= b; h *= 1099511628211ull; };
    for (long r = 0; r < img.nr(); ++r)
        for (long c = 0; c < img.nc(); ++c) {
            eat(img(r, c).red); eat(img(r, c).green); eat(img(r, c).blue);
        }
    return h;
}

static std::string hex64(uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)v);
    return buf;
}

// The synthetic 150x150 input, mirrored in the Rust tests.
static matrix<rgb_pixel> synthetic() {
    matrix<rgb_pixel> img(150, 150);
    for (long r = 0; r < 150; ++r)
        for (long c = 0; c < 150; ++c)
            img(r, c) = rgb_pixel((r * 7 + c * 3) % 256, (r * 2 + c * 5 + 50) % 256, (r * c / 3) % 256);
    return img;
}

// shape_predictor's private members, read with dlib's own deserializers so that the
// unrounded landmark positions can be computed with dlib's impl:: functions.
struct sp_parts {
    matrix<float, 0, 1> initial_shape;
    std::vector<std::vector<impl::regression_tree>> forests;
    std::vector<std::vector<unsigned long>> anchor_idx;
    std::vector<std::vector<dlib::vector<float, 2>>> deltas;
};

// shape_predictor::operator() without the final rounding to integer points.
static std::vector<dpoint> predict_float(const sp_parts& sp, const matrix<rgb_pixel>& img, const rectangle& rect) {
    using namespace impl;
    matrix<float, 0, 1> current_shape = sp.initial_shape;
    std::vector<float> feature_pixel_values;
    for (unsigned long iter = 0; iter < sp.forests.size(); ++iter) {
        extract_feature_pixel_values(img, rect, current_shape, sp.initial_shape, sp.anchor_idx[iter],
                                     sp.deltas[iter], feature_pixel_values);
        unsigned long leaf_idx;
        for (unsigned long i = 0; i < sp.forests[iter].size(); ++i)
            current_shape += sp.forests[iter][i](feature_pixel_values, leaf_idx);
    }
    const point_transform_affine tform_to_img = unnormalizing_tform(rect);
    std::vector<dpoint> parts(current_shape.size() / 2);
    for (unsigned long i = 0; i < parts.size(); ++i) parts[i] = tform_to_img(location(current_shape, i));
    return parts;
}

int main(int argc, char** argv) {
    if (argc < 4) {
        std::cerr << "usage: dlib-reference MODEL_SOURCES_DIR OUT.json NAME=IMAGE_PATH...\n";
        return 2;
    }
    const std::string models = argv[1];
    shape_predictor sp;
    deserialize(models + "/shape_predictor_5_face_landmarks.dat") >> sp;
    sp_parts spp;
    {
        std::ifstream in(models + "/shape_predictor_5_face_landmarks.dat", std::ios::binary);
        int version = 0;
        deserialize(version, in);
        deserialize(spp.initial_shape, in);
        deserialize(spp.forests, in);
        deserialize(spp.anchor_idx, in);
        deserialize(spp.deltas, in);
    }
    anet_type net;
    deserialize(models + "/dlib_face_recognition_resnet_model_v1.dat") >> net;
    frontal_face_detector detector = get_frontal_face_detector();

    std::ostringstream out;
    out << "{\n  \"generator\": \"tools/dlib-reference (dlib " << DLIB_MAJOR_VERSION << "." << DLIB_MINOR_VERSION
        << "." << DLIB_PATCH_VERSION << ")\",\n";
    {
        matrix<rgb_pixel> syn = synthetic();
        matrix<float, 0, 1> e = net(syn);
        out << "  \"synthetic\": {\"formula\": \"r=(y*7+x*3)%256, g=(y*2+x*5+50)%256, b=(y*x/3)%256\", \"hash\": \""
            << hex64(fnv(syn)) << "\", \"embedding\": " << floats(e) << "},\n";
    }
    out << "  \"images\": [\n";
    const int num_images = argc - 3;
    for (int fi = 0; fi < num_images; ++fi) {
        // NAME is what the Rust tests load; IMAGE_PATH holds the same pixels losslessly.
        const std::string arg = argv[3 + fi];
        const size_t eq = arg.find('=');
        const std::string name = arg.substr(0, eq), path = eq == std::string::npos ? arg : arg.substr(eq + 1);
        matrix<rgb_pixel> img;
        load_image(img, path);
        std::vector<rectangle> dets = detector(img);
        out << "    {\"file\": \"" << name << "\", \"width\": " << img.nc() << ", \"height\": " << img.nr()
            << ", \"hash\": \"" << hex64(fnv(img)) << "\", \"faces\": [\n";
        for (size_t d = 0; d < dets.size(); ++d) {
            const rectangle& r = dets[d];
            full_object_detection shape = sp(img, r);
            std::vector<dpoint> pf = predict_float(spp, img, r);
            for (unsigned long i = 0; i < shape.num_parts(); ++i)
                if (point(pf[i]) != shape.part(i)) {
                    std::cerr << "float landmarks disagree with shape_predictor\n";
                    return 1;
                }
            chip_details cd = get_face_chip_details(shape, 150, 0.25);
            matrix<rgb_pixel> chip;
            extract_image_chip(img, cd, chip);
            matrix<float, 0, 1> e = net(chip);

            // The chip-to-image transform exactly as extract_image_chips() builds it when no
            // image pyramid is needed (level == -1), expressed in full-image coordinates.
            pyramid_down<2> pyr;
            long level = -1;
            {
                drectangle rr = cd.rect;
                while (pyr.rect_down(rr).area() > cd.size()) { ++level; rr = pyr.rect_down(rr); }
            }
            out << "      {\"rect\": [" << r.left() << "," << r.top() << "," << r.right() << "," << r.bottom()
                << "],\n       \"parts\": [";
            for (unsigned long i = 0; i < shape.num_parts(); ++i)
                out << (i ? "," : "") << "[" << shape.part(i).x() << "," << shape.part(i).y() << "]";
            out << "],\n       \"parts_f\": [";
            for (size_t i = 0; i < pf.size(); ++i)
                out << (i ? "," : "") << "[" << fmt_f(pf[i].x(), 17) << "," << fmt_f(pf[i].y(), 17) << "]";
            out << "],\n       \"chip_rect\": [" << fmt_f(cd.rect.left(), 17) << "," << fmt_f(cd.rect.top(), 17) << ","
                << fmt_f(cd.rect.right(), 17) << "," << fmt_f(cd.rect.bottom(), 17) << "], \"chip_angle\": "
                << fmt_f(cd.angle, 17) << ", \"pyramid_level\": " << level << ",\n";
            out << "       \"chip_hash\": \"" << hex64(fnv(chip)) << "\", \"chip_samples\": [";
            for (int s = 0; s < 20; ++s) {
                const long rr = (s * 37 + 5) % 150, cc = (s * 53 + 11) % 150;
                out << (s ? "," : "") << "[" << rr << "," << cc << "," << (int)chip(rr, cc).red << ","
                    << (int)chip(rr, cc).green << "," << (int)chip(rr, cc).blue << "]";
            }
            out << "],\n       \"embedding\": " << floats(e) << "}" << (d + 1 < dets.size() ? "," : "") << "\n";
        }
        out << "    ]}" << (fi + 1 < num_images ? "," : "") << "\n";
    }
    out << "  ]\n}\n";
    std::ofstream(argv[2]) << out.str();
    return 0;
}
