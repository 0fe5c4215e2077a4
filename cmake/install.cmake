# What `cmake --install` puts where: the hopper binary, the public plugin header and
# hopper-plugin.pc, so that plugins build out of tree with
#   cc -shared -fPIC $(pkg-config --cflags hopper-plugin) greeter.c -o greeter.so
# (docs/plugins.md). Included last from the top-level CMakeLists.txt.
#
# The .pc file must stay right when the prefix is chosen at install time
# (`cmake --install build --prefix DIR`), which differs from the configure-time
# CMAKE_INSTALL_PREFIX. So it names no absolute prefix: prefix is ${pcfiledir} plus
# the relative walk from <libdir>/pkgconfig back up to the prefix (pkg-config and
# pkgconf both set pcfiledir to the directory the .pc file was found in).

include(GNUInstallDirs)

# The ABI version has one source: the header. The .pc file repeats it as abi_version.
file(STRINGS ${PROJECT_SOURCE_DIR}/include/hopper/plugin.h _hopper_abi
     REGEX "^#define HOPPER_ABI_VERSION_(MAJOR|MINOR) +[0-9]+")
foreach(_line ${_hopper_abi})
    string(REGEX REPLACE "^#define HOPPER_ABI_VERSION_([A-Z]+) +([0-9]+).*$" "\\1;\\2" _kv
                         "${_line}")
    list(GET _kv 0 _k)
    list(GET _kv 1 _v)
    set(HOPPER_ABI_VERSION_${_k} ${_v})
endforeach()
if(NOT DEFINED HOPPER_ABI_VERSION_MAJOR OR NOT DEFINED HOPPER_ABI_VERSION_MINOR)
    message(FATAL_ERROR "install.cmake: no HOPPER_ABI_VERSION_MAJOR/MINOR in plugin.h")
endif()

# prefix: the walk from the installed .pc file's directory back up to the prefix, one
# ".." per component of <libdir>/pkgconfig. An absolute libdir (or one with "." or
# ".." in it) has no such walk: then the configure-time prefix is written as is.
set(_hopper_pcdir ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR CMAKE_INSTALL_LIBDIR MATCHES "(^|/)\\.\\.?(/|$)")
    set(HOPPER_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
    string(REGEX REPLACE "[^/]+" ".." _walk "${_hopper_pcdir}")
    set(HOPPER_PC_PREFIX "\${pcfiledir}/${_walk}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
    set(HOPPER_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
    set(HOPPER_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()

configure_file(${PROJECT_SOURCE_DIR}/cmake/hopper-plugin.pc.in
               ${PROJECT_BINARY_DIR}/hopper-plugin.pc @ONLY)

install(TARGETS hopper RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/include/hopper/plugin.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/hopper COMPONENT plugin-dev)
install(FILES ${PROJECT_BINARY_DIR}/hopper-plugin.pc
        DESTINATION ${_hopper_pcdir} COMPONENT plugin-dev)
