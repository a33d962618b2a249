#ifndef TIDEMARK_CHTTPPARSER_SHIM_H
#define TIDEMARK_CHTTPPARSER_SHIM_H
#include <http_parser.h>

// Bitfields and macros of http_parser, as functions Swift can call.
static inline unsigned int tidemark_http_errno(const http_parser *parser) { return parser->http_errno; }
static inline unsigned int tidemark_http_upgrade(const http_parser *parser) { return parser->upgrade; }
static inline unsigned int tidemark_http_method(const http_parser *parser) { return parser->method; }
static inline unsigned int tidemark_http_chunked(const http_parser *parser) { return (parser->flags & F_CHUNKED) != 0; }
#endif
