#ifndef TIDEMARK_CZSTD_SHIM_H
#define TIDEMARK_CZSTD_SHIM_H
#include <zstd.h>
#endif
