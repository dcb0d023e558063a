CHANGE MASTER TO master_host='db1', master_port=3306, master_user='repl',
  master_password='repl_pass', master_use_gtid=slave_pos, master_connect_retry=1;
START SLAVE;
