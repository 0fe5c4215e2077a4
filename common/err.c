/* Error codes to text: the tables come from HP_ERRNO_MAP in common.h. */
#include "common/common.h"

const char *hp_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define XX(name, code, msg)                                                                        \
    case code:                                                                                     \
        return msg;
        HP_ERRNO_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
}

const char *hp_err_name(int err)
{
    switch (err) {
    case 0:
        return "OK";
#define XX(name, code, msg)                                                                        \
    case code:                                                                                     \
        return #name;
        HP_ERRNO_MAP(XX)
#undef XX
    default:
        return "EUNKNOWN";
    }
}
