# Turns every file under a folder into a C table of assets:
#   cmake -DOUT=file.c -DDIR=dir -P embed_dir.cmake
# Each file becomes {"<path relative to DIR>", bytes, length, "<ETag>"} in
# `const api_asset_t api_assets[]` (api/assets.h), sorted by path. The ETag is the
# first 16 hex digits of the file's SHA-256. Dot files are left out.
file(GLOB_RECURSE _files RELATIVE ${DIR} ${DIR}/*)
list(SORT _files)
set(_out "/* Generated from the files in ${DIR} by cmake/embed_dir.cmake. */\n")
string(APPEND _out "#include \"api/assets.h\"\n\n")
set(_table "")
set(_i 0)
foreach(_f ${_files})
    get_filename_component(_name ${_f} NAME)
    if(_name MATCHES "^\\.")
        continue()
    endif()
    file(READ ${DIR}/${_f} _hex HEX)
    file(SHA256 ${DIR}/${_f} _sha)
    string(SUBSTRING ${_sha} 0 16 _etag)
    file(SIZE ${DIR}/${_f} _size)
    string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," _bytes "${_hex}")
    string(APPEND _out "static const unsigned char asset_${_i}[] = {${_bytes}0x00};\n")
    string(APPEND _table "    {\"${_f}\", asset_${_i}, ${_size}, \"\\\"${_etag}\\\"\"},\n")
    math(EXPR _i "${_i} + 1")
endforeach()
string(APPEND _out "\nconst api_asset_t api_assets[] = {\n${_table}    {0, 0, 0, 0},\n};\n")
string(APPEND _out "const size_t api_nassets = ${_i};\n")
file(WRITE ${OUT}.tmp "${_out}")
file(RENAME ${OUT}.tmp ${OUT})
