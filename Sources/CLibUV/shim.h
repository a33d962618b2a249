#ifndef TIDEMARK_CLIBUV_SHIM_H
#define TIDEMARK_CLIBUV_SHIM_H
#include <uv.h>
#endif
