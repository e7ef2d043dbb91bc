#ifndef JIGDOFS_CCURL_SHIM_H
#define JIGDOFS_CCURL_SHIM_H
#include <curl/curl.h>

/* curl_easy_setopt, curl_multi_setopt and curl_easy_getinfo are C variadics, which Swift cannot
   call: one typed function per argument type. The caller picks the one the option's type asks
   for (CURLOPTTYPE_LONG, _OBJECTPOINT/_STRINGPOINT, _OFF_T, _FUNCTIONPOINT). */

typedef size_t (*jfs_curl_write_callback)(char *data, size_t size, size_t count, void *context);

static inline CURLcode jfs_curl_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode jfs_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode jfs_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode jfs_curl_easy_setopt_off(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode jfs_curl_easy_setopt_write_function(CURL *handle, CURLoption option, jfs_curl_write_callback value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode jfs_curl_easy_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLMcode jfs_curl_multi_setopt_long(CURLM *multi, CURLMoption option, long value) {
    return curl_multi_setopt(multi, option, value);
}

static inline CURLcode jfs_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode jfs_curl_easy_getinfo_string(CURL *handle, CURLINFO info, char **value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode jfs_curl_easy_getinfo_off(CURL *handle, CURLINFO info, curl_off_t *value) {
    return curl_easy_getinfo(handle, info, value);
}

/* CURL_GLOBAL_DEFAULT is a macro built from other macros. */
static inline CURLcode jfs_curl_global_init(void) {
    return curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The result of a finished transfer lives in a union of CURLMsg. */
static inline CURLcode jfs_curl_msg_result(const CURLMsg *msg) {
    return msg->data.result;
}
#endif
