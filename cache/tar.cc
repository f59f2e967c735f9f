// Tar: the ustar header, pax records, and the streaming writer and reader.
#include "cache/tar.h"

#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace regcache::cache {

namespace {

// ---------------------------------------------------------------------------------------------
// The ustar header
// ---------------------------------------------------------------------------------------------

// Field offsets and widths of the POSIX ustar header block.
struct Field {
  size_t offset;
  size_t width;
};
constexpr Field kName{0, 100};
constexpr Field kMode{100, 8};
constexpr Field kUid{108, 8};
constexpr Field kGid{116, 8};
constexpr Field kSize{124, 12};
constexpr Field kMtime{136, 12};
constexpr Field kChecksum{148, 8};
constexpr size_t kTypeOffset = 156;
constexpr Field kMagic{257, 6};
constexpr Field kVersion{263, 2};
constexpr Field kPrefix{345, 155};

// The largest size ustar's 11 octal digits hold, plus one.
constexpr uint64_t kOctalSizeLimit = uint64_t{1} << 33;
constexpr size_t kIoChunk = 1 << 20;
// Pax and GNU long-name bodies are read into memory: bound them.
constexpr uint64_t kMaxMetaBody = 1 << 20;
// tar(1) pads archives to records of 20 blocks; some readers expect it.
constexpr uint64_t kRecord = 20 * kTarBlock;

void putString(char* block, Field f, std::string_view s) {
  std::memcpy(block + f.offset, s.data(), std::min(s.size(), f.width));
}

// Octal, zero-padded, NUL-terminated: the form every tar reader accepts.
void putOctal(char* block, Field f, uint64_t value) {
  for (size_t i = f.width - 1; i-- > 0;) {
    block[f.offset + i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
  block[f.offset + f.width - 1] = '\0';
}

// GNU's base-256 form for numbers octal cannot hold: high bit set, big-endian.
void putBase256(char* block, Field f, uint64_t value) {
  std::memset(block + f.offset, 0, f.width);
  block[f.offset] = static_cast<char>(0x80);
  for (size_t i = f.width; i-- > 1 && value != 0;) {
    block[f.offset + i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
}

uint32_t checksumOf(const char* block) {
  uint32_t sum = 0;
  for (size_t i = 0; i < kTarBlock; ++i) {
    bool in_field = i >= kChecksum.offset && i < kChecksum.offset + kChecksum.width;
    sum += in_field ? ' ' : static_cast<unsigned char>(block[i]);
  }
  return sum;
}

// Old tars summed signed chars; accept either.
uint32_t signedChecksumOf(const char* block) {
  int32_t sum = 0;
  for (size_t i = 0; i < kTarBlock; ++i) {
    bool in_field = i >= kChecksum.offset && i < kChecksum.offset + kChecksum.width;
    sum += in_field ? ' ' : static_cast<signed char>(block[i]);
  }
  return static_cast<uint32_t>(sum);
}

std::optional<uint64_t> parseNumber(const char* block, Field f) {
  const auto* p = reinterpret_cast<const unsigned char*>(block + f.offset);
  if (p[0] & 0x80) {
    uint64_t value = p[0] & 0x7f;
    for (size_t i = 1; i < f.width; ++i) {
      if (value >> 56) return std::nullopt;
      value = (value << 8) | p[i];
    }
    return value;
  }
  size_t i = 0;
  while (i < f.width && p[i] == ' ') ++i;
  uint64_t value = 0;
  bool any = false;
  for (; i < f.width && p[i] >= '0' && p[i] <= '7'; ++i) {
    if (value >> 60) return std::nullopt;
    value = value * 8 + (p[i] - '0');
    any = true;
  }
  for (; i < f.width; ++i) {
    if (p[i] != ' ' && p[i] != '\0') return std::nullopt;
  }
  if (!any) return 0;
  return value;
}

std::string fieldString(const char* block, Field f) {
  const char* start = block + f.offset;
  return std::string(start, strnlen(start, f.width));
}

bool isZeroBlock(const char* block) {
  return std::all_of(block, block + kTarBlock, [](char c) { return c == 0; });
}

uint64_t paddingFor(uint64_t size) { return (kTarBlock - size % kTarBlock) % kTarBlock; }

// Splits a long name into ustar's prefix and name at a '/', when one fits. Returns the prefix
// length, or nullopt when no split fits.
std::optional<size_t> ustarSplit(std::string_view name) {
  for (size_t slash = name.find('/'); slash != std::string_view::npos;
       slash = name.find('/', slash + 1)) {
    size_t rest = name.size() - slash - 1;
    if (slash <= kPrefix.width && rest > 0 && rest <= kName.width) return slash;
  }
  return std::nullopt;
}

// One pax record: "<length> <key>=<value>\n", the length counting itself.
std::string paxRecord(std::string_view key, std::string_view value) {
  size_t base = key.size() + value.size() + 3;
  size_t length = base + std::to_string(base).size();
  if (std::to_string(length).size() + base != length) ++length;
  return std::to_string(length) + " " + std::string(key) + "=" + std::string(value) + "\n";
}

Status errnoStatus(const char* what) {
  return ioError(std::string("tar: ") + what + ": " + std::strerror(errno));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// TarWriter
// ---------------------------------------------------------------------------------------------

Status TarWriter::addDirectory(std::string_view name) {
  std::string dir(name);
  if (dir.empty() || dir.back() != '/') dir.push_back('/');
  return writeHeader(dir, '5', 0);
}

Status TarWriter::addFile(std::string_view name, std::string_view data) {
  if (Status s = writeHeader(name, '0', data.size()); !s) return s;
  if (Status s = writeAll(data.data(), data.size()); !s) return s;
  return pad(data.size());
}

Status TarWriter::addFileFrom(std::string_view name, int src_fd, uint64_t size) {
  if (Status s = writeHeader(name, '0', size); !s) return s;
  if (Status s = copyBody(src_fd, size); !s) return s;
  return pad(size);
}

Status TarWriter::finish() {
  // Two zero blocks, then zeros up to the next whole record.
  uint64_t end = written_ + 2 * kTarBlock;
  uint64_t total = (end + kRecord - 1) / kRecord * kRecord;
  std::vector<char> zeros(total - written_, 0);
  return writeAll(zeros.data(), zeros.size());
}

// A name ustar cannot hold, or a size past 8 GiB, gets a pax header first; the ustar header
// then carries a truncated name and a base-256 size for readers that ignore pax.
Status TarWriter::writeHeader(std::string_view name, char type, uint64_t size) {
  std::optional<size_t> split;
  if (name.size() > kName.width) split = ustarSplit(name);
  std::string records;
  if (name.size() > kName.width && !split) records += paxRecord("path", name);
  if (size >= kOctalSizeLimit) records += paxRecord("size", std::to_string(size));
  if (!records.empty()) {
    if (Status s = writePaxHeader(name, records); !s) return s;
  }

  char block[kTarBlock] = {};
  if (split) {
    putString(block, kPrefix, name.substr(0, *split));
    putString(block, kName, name.substr(*split + 1));
  } else {
    putString(block, kName, name);
  }
  putOctal(block, kMode, type == '5' ? 0755 : 0644);
  putOctal(block, kUid, 0);
  putOctal(block, kGid, 0);
  if (size < kOctalSizeLimit) {
    putOctal(block, kSize, size);
  } else {
    putBase256(block, kSize, size);
  }
  putOctal(block, kMtime, static_cast<uint64_t>(std::max<int64_t>(mtime_, 0)));
  block[kTypeOffset] = type;
  putString(block, kMagic, std::string_view("ustar\0", 6));
  putString(block, kVersion, "00");
  putOctal(block, {kChecksum.offset, 7}, checksumOf(block));
  block[kChecksum.offset + 7] = ' ';
  return writeAll(block, kTarBlock);
}

Status TarWriter::writePaxHeader(std::string_view name, std::string_view records) {
  std::string_view base = name.substr(name.rfind('/') + 1);
  std::string pax_name = "PaxHeaders/" + std::string(base.substr(0, 80));
  char block[kTarBlock] = {};
  putString(block, kName, pax_name);
  putOctal(block, kMode, 0644);
  putOctal(block, kUid, 0);
  putOctal(block, kGid, 0);
  putOctal(block, kSize, records.size());
  putOctal(block, kMtime, static_cast<uint64_t>(std::max<int64_t>(mtime_, 0)));
  block[kTypeOffset] = 'x';
  putString(block, kMagic, std::string_view("ustar\0", 6));
  putString(block, kVersion, "00");
  putOctal(block, {kChecksum.offset, 7}, checksumOf(block));
  block[kChecksum.offset + 7] = ' ';
  if (Status s = writeAll(block, kTarBlock); !s) return s;
  if (Status s = writeAll(records.data(), records.size()); !s) return s;
  return pad(records.size());
}

Status TarWriter::writeAll(const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd_, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errnoStatus("write");
    p += n;
    len -= static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
  return Status::ok();
}

Status TarWriter::pad(uint64_t size) {
  static const char kZeros[kTarBlock] = {};
  return writeAll(kZeros, paddingFor(size));
}

// sendfile keeps blob bytes out of user space; when the kernel refuses the pair of
// descriptors (EINVAL, ENOSYS) the copy goes through a buffer instead.
Status TarWriter::copyBody(int src_fd, uint64_t size) {
  uint64_t left = size;
  while (left > 0) {
    ssize_t n = ::sendfile(fd_, src_fd, nullptr, std::min<uint64_t>(left, 1u << 30));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EINVAL || errno == ENOSYS) && left == size) break;
    if (n < 0) return errnoStatus("sendfile");
    if (n == 0) return ioError("tar: source ended " + std::to_string(left) + " bytes early");
    left -= static_cast<uint64_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
  if (left == 0) return Status::ok();

  auto buf = std::make_unique<char[]>(kIoChunk);
  while (left > 0) {
    ssize_t n = ::read(src_fd, buf.get(), std::min<uint64_t>(left, kIoChunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errnoStatus("read");
    if (n == 0) return ioError("tar: source ended " + std::to_string(left) + " bytes early");
    if (Status s = writeAll(buf.get(), static_cast<size_t>(n)); !s) return s;
    left -= static_cast<uint64_t>(n);
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// TarReader
// ---------------------------------------------------------------------------------------------

TarReader::TarReader(int fd) : fd_(fd), buf_(new char[kIoChunk]) {
  struct stat st;
  seekable_ = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ::lseek(fd, 0, SEEK_CUR) >= 0;
}

TarReader::~TarReader() { delete[] buf_; }

// Makes at least `want` bytes (at most kIoChunk) available in the buffer, short only at the
// end of input.
Status TarReader::fill(size_t want) {
  if (buf_len_ - buf_pos_ >= want) return Status::ok();
  std::memmove(buf_, buf_ + buf_pos_, buf_len_ - buf_pos_);
  buf_len_ -= buf_pos_;
  buf_pos_ = 0;
  while (buf_len_ < want) {
    ssize_t n = ::read(fd_, buf_ + buf_len_, kIoChunk - buf_len_);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errnoStatus("read");
    if (n == 0) break;
    buf_len_ += static_cast<size_t>(n);
  }
  return Status::ok();
}

Status TarReader::readBlock(char* block) {
  if (Status s = fill(kTarBlock); !s) return s;
  size_t have = buf_len_ - buf_pos_;
  if (have < kTarBlock) {
    return corrupt(have == 0 ? "tar: input ends at offset " + std::to_string(offset_) +
                                   " without the end-of-archive marker (truncated?)"
                             : "tar: header cut short at offset " + std::to_string(offset_));
  }
  std::memcpy(block, buf_ + buf_pos_, kTarBlock);
  buf_pos_ += kTarBlock;
  offset_ += kTarBlock;
  return Status::ok();
}

Status TarReader::discard(uint64_t len) {
  uint64_t from_buffer = std::min<uint64_t>(len, buf_len_ - buf_pos_);
  buf_pos_ += from_buffer;
  offset_ += from_buffer;
  len -= from_buffer;
  if (len == 0) return Status::ok();
  if (seekable_) {
    struct stat st;
    off_t at = ::lseek(fd_, 0, SEEK_CUR);
    if (at < 0 || ::fstat(fd_, &st) != 0) return errnoStatus("seek");
    if (static_cast<uint64_t>(st.st_size - at) < len) {
      return corrupt("tar: entry cut short at offset " +
                     std::to_string(offset_ + static_cast<uint64_t>(st.st_size - at)));
    }
    if (::lseek(fd_, static_cast<off_t>(len), SEEK_CUR) < 0) return errnoStatus("seek");
    offset_ += len;
    return Status::ok();
  }
  while (len > 0) {
    if (Status s = fill(1); !s) return s;
    size_t have = std::min<uint64_t>(len, buf_len_ - buf_pos_);
    if (have == 0) return corrupt("tar: entry cut short at offset " + std::to_string(offset_));
    buf_pos_ += have;
    offset_ += have;
    len -= have;
  }
  return Status::ok();
}

Result<std::string> TarReader::readSmallBody(uint64_t size) {
  if (size > kMaxMetaBody)
    return corrupt("tar: extended header of " + std::to_string(size) + " bytes at offset " +
                   std::to_string(offset_));
  std::string body(size, '\0');
  remaining_ = size;
  size_t got = 0;
  while (got < size) {
    auto n = read(body.data() + got, size - got);
    if (!n) return n.status();
    got += *n;
  }
  if (Status s = discard(paddingFor(size)); !s) return s;
  return body;
}

// Applies the records of a pax extended header we need (path, size); others are ignored.
Status TarReader::applyPax(std::string_view records, std::optional<std::string>& path,
                           std::optional<uint64_t>& size) {
  while (!records.empty()) {
    size_t space = records.find(' ');
    uint64_t length = 0;
    for (size_t i = 0; i < space && space != std::string_view::npos; ++i) {
      if (records[i] < '0' || records[i] > '9') return corrupt("tar: malformed pax record");
      length = length * 10 + static_cast<uint64_t>(records[i] - '0');
    }
    if (space == std::string_view::npos || length <= space + 1 || length > records.size() ||
        records[length - 1] != '\n') {
      return corrupt("tar: malformed pax record");
    }
    std::string_view record = records.substr(space + 1, length - space - 2);
    records.remove_prefix(length);
    size_t eq = record.find('=');
    if (eq == std::string_view::npos) return corrupt("tar: malformed pax record");
    std::string_view key = record.substr(0, eq);
    std::string_view value = record.substr(eq + 1);
    if (key == "path") path = std::string(value);
    if (key == "size") {
      uint64_t v = 0;
      for (char c : value) {
        if (c < '0' || c > '9' || (v >> 59)) return corrupt("tar: malformed pax size");
        v = v * 10 + static_cast<uint64_t>(c - '0');
      }
      size = v;
    }
  }
  return Status::ok();
}

// Walks header blocks until a file or directory (or the end): pax and GNU long-name headers
// set what the next entry is called and how big it is; global headers are skipped.
Result<std::optional<TarEntry>> TarReader::next() {
  if (done_) return std::optional<TarEntry>();
  auto entry = nextEntry();
  if (!entry) done_ = true;
  return entry;
}

Result<std::optional<TarEntry>> TarReader::nextEntry() {
  if (Status s = discard(remaining_ + padding_); !s) return s;
  remaining_ = padding_ = 0;

  std::optional<std::string> pending_path;
  std::optional<uint64_t> pending_size;
  char block[kTarBlock];
  while (true) {
    uint64_t at = offset_;
    if (Status s = readBlock(block); !s) return s;
    if (isZeroBlock(block)) {
      done_ = true;  // a second zero block may follow; nothing after the first is read
      return std::optional<TarEntry>();
    }
    uint32_t stored = static_cast<uint32_t>(parseNumber(block, kChecksum).value_or(~0u));
    if (stored != checksumOf(block) && stored != signedChecksumOf(block)) {
      return corrupt("tar: bad header checksum at offset " + std::to_string(at));
    }
    auto size = parseNumber(block, kSize);
    if (!size) return corrupt("tar: bad size field at offset " + std::to_string(at));
    char type = block[kTypeOffset];

    if (type == 'x' || type == 'g' || type == 'L') {
      auto body = readSmallBody(*size);
      if (!body) return body.status();
      if (type == 'x') {
        if (Status s = applyPax(*body, pending_path, pending_size); !s) return s;
      } else if (type == 'L') {
        pending_path = body->substr(0, body->find('\0'));
      }
      continue;
    }

    TarEntry entry;
    std::string name = fieldString(block, kName);
    std::string prefix = fieldString(block, kPrefix);
    // GNU's old format ("ustar  ") keeps other fields where POSIX has the prefix.
    bool posix = std::memcmp(block + kMagic.offset, "ustar\0", 6) == 0;
    if (posix && !prefix.empty()) name = prefix + "/" + name;
    entry.name = pending_path.value_or(name);
    bool has_body = type == '0' || type == '\0' || type == '7';
    entry.type = has_body ? TarEntry::Type::kFile
                          : (type == '5' ? TarEntry::Type::kDirectory : TarEntry::Type::kOther);
    entry.size = has_body ? pending_size.value_or(*size) : 0;
    remaining_ = entry.size;
    padding_ = paddingFor(entry.size);
    return std::optional<TarEntry>(std::move(entry));
  }
}

Result<size_t> TarReader::read(char* buf, size_t len) {
  size_t want = static_cast<size_t>(std::min<uint64_t>(len, remaining_));
  if (want == 0) return size_t{0};
  if (buf_pos_ == buf_len_ && want >= kIoChunk / 4) {
    // Large reads skip the buffer.
    ssize_t n;
    do {
      n = ::read(fd_, buf, want);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errnoStatus("read");
    if (n == 0) return corrupt("tar: entry cut short at offset " + std::to_string(offset_));
    offset_ += static_cast<uint64_t>(n);
    remaining_ -= static_cast<uint64_t>(n);
    return static_cast<size_t>(n);
  }
  if (Status s = fill(1); !s) return s;
  size_t have = std::min(want, buf_len_ - buf_pos_);
  if (have == 0) return corrupt("tar: entry cut short at offset " + std::to_string(offset_));
  std::memcpy(buf, buf_ + buf_pos_, have);
  buf_pos_ += have;
  offset_ += have;
  remaining_ -= have;
  return have;
}

Status TarReader::skip() {
  Status s = discard(remaining_);
  remaining_ = 0;
  return s;
}

}  // namespace regcache::cache
