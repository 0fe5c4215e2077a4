/* The one source of Hopper's version; CMakeLists.txt parses these lines. */
#ifndef HP_VERSION_H
#define HP_VERSION_H

#define HOPPER_VERSION_MAJOR  0
#define HOPPER_VERSION_MINOR  1
#define HOPPER_VERSION_PATCH  0
#define HOPPER_VERSION_STRING "0.1.0"

#endif
