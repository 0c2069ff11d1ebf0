# LLMUX_SANITIZE: a comma-separated -fsanitize list, e.g. "address,undefined" or "thread".
set(LLMUX_SANITIZE "" CACHE STRING "sanitizers to build with (address,undefined | thread)")
if(LLMUX_SANITIZE)
    add_compile_options(-fsanitize=${LLMUX_SANITIZE} -fno-sanitize-recover=all
                        -fno-omit-frame-pointer -g)
    add_link_options(-fsanitize=${LLMUX_SANITIZE})
endif()
