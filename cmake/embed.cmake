# Turns text files into C arrays:
#   cmake -DOUT=file.c -DDIR=dir -DNAMES=a,b [-DPREFIX=broker__lua_] [-DEXT=.lua] -P embed.cmake
# Each DIR/<name><EXT> becomes `const char <PREFIX><name>[]`, NUL-terminated.
if(NOT DEFINED PREFIX)
    set(PREFIX broker__lua_)
endif()
if(NOT DEFINED EXT)
    set(EXT .lua)
endif()
string(REPLACE "," ";" NAMES "${NAMES}")
set(_out "/* Generated from files in ${DIR} by cmake/embed.cmake. */\n")
foreach(_name ${NAMES})
    file(READ ${DIR}/${_name}${EXT} _hex HEX)
    string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," _bytes "${_hex}")
    string(APPEND _out "const char ${PREFIX}${_name}[] = {${_bytes}0x00};\n")
endforeach()
file(WRITE ${OUT}.tmp "${_out}")
file(RENAME ${OUT}.tmp ${OUT})
