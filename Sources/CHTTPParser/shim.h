#ifndef TIDEMARK_CHTTPPARSER_SHIM_H
#define TIDEMARK_CHTTPPARSER_SHIM_H
#include <http_parser.h>
#endif
