# Writes a C++ source that holds a file's bytes as an array, so the binary carries it (the
# status page works air-gapped, from any working directory). Run as a script:
#   cmake -DINPUT=file -DOUTPUT=file.cc -DSYMBOL=kName -DNAMESPACE=regcache::proxy -P embed_file.cmake
# Defines `extern const unsigned char SYMBOL[]` (NUL-terminated) and `extern const size_t
# SYMBOL##Size` (without the NUL).
file(READ "${INPUT}" content HEX)
string(LENGTH "${content}" hex_length)
math(EXPR size "${hex_length} / 2")
# Two hex digits per byte -> "0xab," with a line break every 16 bytes.
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
     "// Generated from ${INPUT} by cmake/embed_file.cmake. Do not edit.\n"
     "#include <cstddef>\n\n"
     "namespace ${NAMESPACE} {\n\n"
     "extern const unsigned char ${SYMBOL}[] = {\n${bytes}0x00};\n"
     "extern const size_t ${SYMBOL}Size = ${size};\n\n"
     "}  // namespace ${NAMESPACE}\n")
# Only a changed file touches the output, so an unchanged page rebuilds nothing.
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
