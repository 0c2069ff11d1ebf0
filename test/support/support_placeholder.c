/* replaced by the integration test harness */
int lx_test_support_placeholder(void);
int lx_test_support_placeholder(void)
{
    return 0;
}
