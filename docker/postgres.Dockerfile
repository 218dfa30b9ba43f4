# PostgreSQL 15 from Debian's packages, for CI where the official postgres:15 image cannot be
# pulled. It behaves as that image does for what docker/compose.yaml uses: POSTGRES_USER,
# POSTGRES_DB, POSTGRES_HOST_AUTH_METHOD, /docker-entrypoint-initdb.d/*.sql on first start, data
# in /var/lib/postgresql/data, `command: postgres -c ...`.
# Build: docker build -f docker/postgres.Dockerfile --build-arg BASE=vrp-base:bookworm docker
ARG BASE=vrp-base:bookworm
FROM ${BASE}

RUN test -x /usr/lib/postgresql/15/bin/postgres \
    && mkdir -p /var/lib/postgresql/data /run/postgresql /docker-entrypoint-initdb.d \
    && chown -R postgres:postgres /var/lib/postgresql /run/postgresql \
    && chmod 0700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
VOLUME ["/var/lib/postgresql/data"]
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
CMD ["postgres", "-c", "listen_addresses=*"]
