// Tests for the streaming tar writer and reader: round trips, long names and big sizes, and
// damage that must be reported rather than read past.
#include "cache/tar.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/unit/cache/temp_dir.h"

namespace regcache::cache {
namespace {

using testing::TempDir;

struct ReadBack {
  std::vector<TarEntry> entries;
  std::vector<std::string> bodies;
  Status status;
};

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

void spill(const std::filesystem::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// Reads every entry and body of the archive at `path`, with `chunk`-byte reads.
ReadBack readAll(const std::filesystem::path& path, size_t chunk = 7000) {
  ReadBack out;
  int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  TarReader reader(fd);
  std::vector<char> buf(chunk);
  while (true) {
    auto entry = reader.next();
    if (!entry) {
      out.status = entry.status();
      break;
    }
    if (!entry->has_value()) break;
    std::string body;
    while (true) {
      auto n = reader.read(buf.data(), buf.size());
      if (!n) {
        out.status = n.status();
        break;
      }
      if (*n == 0) break;
      body.append(buf.data(), *n);
    }
    out.entries.push_back(**entry);
    out.bodies.push_back(body);
    if (!out.status) break;
  }
  ::close(fd);
  return out;
}

// Writes an archive of (name, body) files to `path`.
void writeArchive(const std::filesystem::path& path,
                  const std::vector<std::pair<std::string, std::string>>& files) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  REQUIRE(fd >= 0);
  TarWriter writer(fd, 1700000000);
  REQUIRE(writer.addDirectory("blobs").isOk());
  for (const auto& [name, body] : files) REQUIRE(writer.addFile(name, body).isOk());
  REQUIRE(writer.finish().isOk());
  ::close(fd);
}

std::string bigBody(size_t size) {
  std::string body(size, '\0');
  for (size_t i = 0; i < size; ++i) body[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  return body;
}

TEST_CASE("Tar: files written are read back with names, sizes and bytes", "[cache][tar]") {
  TempDir dir;
  auto path = dir.path() / "a.tar";
  std::vector<std::pair<std::string, std::string>> files = {
      {"oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}"},
      {"empty", ""},
      {"blobs/sha256/exactly-a-block", std::string(512, 'x')},
      {"blobs/sha256/big", bigBody(3 * 1024 * 1024 + 17)},
  };
  writeArchive(path, files);
  REQUIRE(std::filesystem::file_size(path) % (20 * 512) == 0);

  for (size_t chunk : {size_t{1} << 20, size_t{4096}, size_t{1}}) {
    if (chunk == 1) files.pop_back();  // byte-by-byte reads of 3 MiB are slow, not interesting
    if (chunk == 1) writeArchive(path, files);
    ReadBack back = readAll(path, chunk);
    REQUIRE(back.status.isOk());
    REQUIRE(back.entries.size() == files.size() + 1);
    CHECK(back.entries[0].name == "blobs/");
    CHECK(back.entries[0].type == TarEntry::Type::kDirectory);
    for (size_t i = 0; i < files.size(); ++i) {
      CHECK(back.entries[i + 1].name == files[i].first);
      CHECK(back.entries[i + 1].type == TarEntry::Type::kFile);
      CHECK(back.entries[i + 1].size == files[i].second.size());
      CHECK(back.bodies[i + 1] == files[i].second);
    }
  }
}

TEST_CASE("Tar: GNU tar lists and extracts what the writer wrote", "[cache][tar]") {
  TempDir dir;
  auto path = dir.path() / "a.tar";
  std::string long_dir(120, 'd');
  std::string long_name = "blobs/" + long_dir + "/" + std::string(90, 'n');  // ustar prefix
  std::string longer = "blobs/" + std::string(180, 'p');                     // pax path
  writeArchive(path, {{"index.json", "{}"}, {long_name, "one"}, {longer, "two"}});
  auto out = dir.path() / "x";
  std::filesystem::create_directory(out);
  std::string command = "tar -xf " + path.string() + " -C " + out.string() + " 2>&1";
  REQUIRE(std::system(command.c_str()) == 0);
  CHECK(slurp(out / "index.json") == "{}");
  CHECK(slurp(out / long_name) == "one");
  CHECK(slurp(out / longer) == "two");
}

TEST_CASE("Tar: long names survive through the ustar prefix and pax records", "[cache][tar]") {
  TempDir dir;
  auto path = dir.path() / "a.tar";
  std::string split = std::string(150, 'a') + "/" + std::string(99, 'b');
  std::string unsplittable = std::string(300, 'c');
  std::string sha512 = "blobs/sha512/" + std::string(128, 'e');
  writeArchive(path, {{split, "1"}, {unsplittable, "2"}, {sha512, "3"}});
  ReadBack back = readAll(path);
  REQUIRE(back.status.isOk());
  REQUIRE(back.entries.size() == 4);
  CHECK(back.entries[1].name == split);
  CHECK(back.entries[2].name == unsplittable);
  CHECK(back.entries[3].name == sha512);
  CHECK(back.bodies[3] == "3");
}

TEST_CASE("Tar: a file copied from a descriptor streams its bytes", "[cache][tar]") {
  TempDir dir;
  std::string body = bigBody(2 * 1024 * 1024 + 1);
  spill(dir.path() / "src", body);
  auto path = dir.path() / "a.tar";
  int src = ::open((dir.path() / "src").c_str(), O_RDONLY);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  TarWriter writer(fd);
  REQUIRE(writer.addFileFrom("blob", src, body.size()).isOk());
  REQUIRE(writer.finish().isOk());
  ::close(fd);
  ::close(src);
  ReadBack back = readAll(path);
  REQUIRE(back.status.isOk());
  REQUIRE(back.bodies.size() == 1);
  CHECK(back.bodies[0] == body);
}

TEST_CASE("Tar: a source shorter than announced fails the write", "[cache][tar]") {
  TempDir dir;
  spill(dir.path() / "src", "short");
  int src = ::open((dir.path() / "src").c_str(), O_RDONLY);
  int fd = ::open((dir.path() / "a.tar").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  TarWriter writer(fd);
  CHECK(writer.addFileFrom("blob", src, 100).code() == Code::kIo);
  ::close(fd);
  ::close(src);
}

TEST_CASE("Tar: an archive cut anywhere is reported, never read as complete", "[cache][tar]") {
  TempDir dir;
  auto path = dir.path() / "a.tar";
  writeArchive(path, {{"first", std::string(1000, 'f')}, {"second", std::string(700, 's')}});
  std::string whole = slurp(path);
  // Layout: blobs/ header at 0, first's header at 512 and body at 1024 (padded to 2048),
  // second's header at 2048 and body at 2560 (padded to 3584), then the end marker. Cut
  // inside a header, a body and padding, exactly between entries, and before the marker.
  for (size_t cut : {100, 1624, 2034, 2048, 3584}) {
    spill(path, std::string_view(whole).substr(0, cut));
    ReadBack back = readAll(path);
    INFO("cut at " << cut);
    CHECK(back.status.code() == Code::kCorrupt);
  }
}

TEST_CASE("Tar: a header with a flipped byte fails its checksum", "[cache][tar]") {
  TempDir dir;
  auto path = dir.path() / "a.tar";
  writeArchive(path, {{"file", "body"}});
  std::string bytes = slurp(path);
  bytes[512 + 3] ^= 0x01;  // the name of the file's header
  spill(path, bytes);
  ReadBack back = readAll(path);
  CHECK(back.status.code() == Code::kCorrupt);
  CHECK(back.status.message().find("checksum") != std::string::npos);
}

TEST_CASE("Tar: a flipped byte in a body is read as is (digests catch it)", "[cache][tar]") {
  TempDir dir;
  auto path = dir.path() / "a.tar";
  writeArchive(path, {{"file", "body"}});
  std::string bytes = slurp(path);
  bytes[1024 + 1] ^= 0x01;
  spill(path, bytes);
  ReadBack back = readAll(path);
  REQUIRE(back.status.isOk());
  CHECK(back.bodies[1] == "bndy");
}

TEST_CASE("Tar: entries skipped unread leave the reader at the next header", "[cache][tar]") {
  TempDir dir;
  auto path = dir.path() / "a.tar";
  writeArchive(path, {{"a", bigBody(5000)}, {"b", "bee"}});
  int fd = ::open(path.c_str(), O_RDONLY);
  TarReader reader(fd);
  REQUIRE((*reader.next())->name == "blobs/");
  REQUIRE((*reader.next())->name == "a");
  char c;
  REQUIRE(*reader.read(&c, 1) == 1);
  REQUIRE(reader.skip().isOk());
  auto b = reader.next();
  REQUIRE(b.isOk());
  REQUIRE((*b)->name == "b");
  char buf[8];
  CHECK(std::string(buf, *reader.read(buf, sizeof buf)) == "bee");
  CHECK(!reader.next()->has_value());
  ::close(fd);
}

TEST_CASE("Tar: a piped archive is read the same as a file", "[cache][tar]") {
  TempDir dir;
  auto path = dir.path() / "a.tar";
  writeArchive(path, {{"a", bigBody(300000)}, {"b", "bee"}});
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    std::string bytes = slurp(path);
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::write(fds[1], bytes.data() + off, bytes.size() - off);
      if (n <= 0) ::_exit(1);
      off += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  TarReader reader(fds[0]);
  REQUIRE((*reader.next())->name == "blobs/");
  REQUIRE((*reader.next())->name == "a");  // skipped unread: discarded through the pipe
  auto b = reader.next();
  REQUIRE(b.isOk());
  CHECK((*b)->name == "b");
  CHECK(!reader.next()->has_value());
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
}

}  // namespace
}  // namespace regcache::cache
