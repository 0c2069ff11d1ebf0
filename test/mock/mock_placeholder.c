int lx_mock_placeholder(void);
int lx_mock_placeholder(void)
{
    return 0;
}
