// quickstart.cpp - write a vitrify file with two arrays and metadata, then open and read it.
#include <cstdio>
#include <span>
#include <vector>

#include "vitrify/vitrify.hpp"

int main() {
  // Write: a raw float32 matrix (memory-mappable) and a zstd-compressed int64 vector.
  std::vector<float> weights(3 * 4);
  for (std::size_t i = 0; i < weights.size(); ++i) weights[i] = 0.5f * static_cast<float>(i);
  std::vector<std::int64_t> labels(1000);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 3);

  auto w = vitrify::writer::create("quickstart.vit");
  if (!w) return std::fprintf(stderr, "%s\n", w.err().what().c_str()), 1;
  const std::uint64_t wshape[] = {3, 4}, lshape[] = {1000};
  auto r = w->add_array("weights", vitrify::dtype::float32, wshape, std::as_bytes(std::span(weights)));
  if (r) r = w->add_array("labels", vitrify::dtype::int64, lshape, std::as_bytes(std::span(labels)),
                          {vitrify::codec::zstd, 3});
  vitrify::value meta = vitrify::value::dict();
  meta.dict_set(vitrify::value::string("model"), vitrify::value::string("demo"));
  meta.dict_set(vitrify::value::string("epochs"), vitrify::value::integer(10));
  w->set_metadata(meta);
  if (r) r = w->commit();  // atomic: the file appears complete or not at all
  if (!r) return std::fprintf(stderr, "%s\n", r.err().what().c_str()), 1;

  // Read: open() verifies the whole structure once; accessors need no further checks.
  auto f = vitrify::file::open("quickstart.vit");
  if (!f) return std::fprintf(stderr, "%s\n", f.err().what().c_str()), 1;
  auto wi = f->find("weights");
  if (!wi) return std::fprintf(stderr, "%s\n", wi.err().what().c_str()), 1;
  auto view = f->view(*wi, /*check=*/true);  // zero-copy span into the memory map
  if (!view) return std::fprintf(stderr, "%s\n", view.err().what().c_str()), 1;
  const float* wp = reinterpret_cast<const float*>(view->data());

  auto li = f->find("labels");
  if (!li) return std::fprintf(stderr, "%s\n", li.err().what().c_str()), 1;
  std::vector<std::int64_t> back(f->arrays()[*li].count);
  auto rd = f->read_into(*li, std::as_writable_bytes(std::span(back)));  // decompresses, checks XXH3
  if (!rd) return std::fprintf(stderr, "%s\n", rd.err().what().c_str()), 1;

  std::printf("%s: format %u.%u, %zu arrays, model=%s\n", f->name().c_str(), f->version_major(),
              f->version_minor(), f->arrays().size(), f->metadata().get("model")->as_string().c_str());
  std::printf("weights[2][3] = %g, labels[999] = %lld\n", static_cast<double>(wp[2 * 4 + 3]),
              static_cast<long long>(back[999]));
  return (wp[11] == weights[11] && back == labels) ? 0 : 1;
}
