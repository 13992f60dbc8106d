#!/nonexistent/sh
echo unreachable
