# Warnings for the project's own code (src/ and test/), never for deps/.
function(llmux_warnings target)
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wshadow -Wformat=2
                           -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter)
    if(LLMUX_WERROR)
        target_compile_options(${target} PRIVATE -Werror)
    endif()
endfunction()
