/* Guest-side vsock helper for the nested devices scenario (built static with gcc).
 *   vsock_echo listen PORT          accept one connection, echo one line back, exit
 *   vsock_echo connect PORT TEXT    connect to the host (CID 2), send TEXT\n, print the reply
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/vm_sockets.h>

static int read_line(int fd, char *buf, size_t cap) {
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0) break;
        if (buf[n++] == '\n') break;
    }
    buf[n] = 0;
    return (int)n;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: vsock_echo listen PORT | connect PORT TEXT\n"); return 2; }
    struct sockaddr_vm a;
    memset(&a, 0, sizeof a);
    a.svm_family = AF_VSOCK;
    a.svm_port = (unsigned)atoi(argv[2]);
    int s = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (s < 0) { perror("socket"); return 1; }
    char buf[512];
    if (strcmp(argv[1], "listen") == 0) {
        a.svm_cid = VMADDR_CID_ANY;
        if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 1)) { perror("bind/listen"); return 1; }
        printf("vsock_echo: listening on %u\n", a.svm_port);
        fflush(stdout);
        int c = accept(s, NULL, NULL);
        if (c < 0) { perror("accept"); return 1; }
        int n = read_line(c, buf, sizeof buf);
        if (write(c, buf, n) != n) { perror("write"); return 1; }
        printf("vsock_echo: echoed %s", buf);
        close(c);
        return 0;
    }
    if (argc < 4) return 2;
    a.svm_cid = VMADDR_CID_HOST;
    if (connect(s, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
    snprintf(buf, sizeof buf, "%s\n", argv[3]);
    if (write(s, buf, strlen(buf)) != (ssize_t)strlen(buf)) { perror("write"); return 1; }
    read_line(s, buf, sizeof buf);
    printf("vsock_echo: reply %s", buf);
    return 0;
}
