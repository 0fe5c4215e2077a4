# Turns Lua files into C arrays:
#   cmake -DOUT=file.c -DDIR=scripts -DNAMES=a,b -P embed.cmake
# Each DIR/<name>.lua becomes `const char broker__lua_<name>[]`, NUL-terminated.
string(REPLACE "," ";" NAMES "${NAMES}")
set(_out "/* Generated from the Lua files in broker/redis/scripts by cmake/embed.cmake. */\n")
foreach(_name ${NAMES})
    file(READ ${DIR}/${_name}.lua _hex HEX)
    string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," _bytes "${_hex}")
    string(APPEND _out "const char broker__lua_${_name}[] = {${_bytes}0x00};\n")
endforeach()
file(WRITE ${OUT}.tmp "${_out}")
file(RENAME ${OUT}.tmp ${OUT})
